# CPU-sized long-tail schedule: a few epochs with a one-cycle rate per experience (warm-up
# included), otherwise the paper recipe's optimizer (SGD, momentum 0.9, batch 128, wd 2e-4).
cl_strategy = dict(
    type='Naive',
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=4,
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=2e-4),
    scheduler=dict(type='OneCycleLR', max_lr=0.1, total_steps='auto', pct_start=0.25),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
