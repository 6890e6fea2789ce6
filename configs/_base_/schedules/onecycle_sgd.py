# SGD with a one-cycle learning rate spanning each experience ('auto' = this experience's length).
_batch_size = 128
cl_strategy = dict(
    type='Naive',
    train_mb_size=_batch_size,
    eval_mb_size=512,
    train_epochs=2,
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    scheduler=dict(type='OneCycleLR', max_lr=0.1, total_steps='auto', pct_start=0.25),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
