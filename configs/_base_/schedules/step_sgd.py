# The original demo's schedule: SGD, StepLR stepped per epoch, many epochs (GPU scale).
_batch_size = 64
cl_strategy = dict(
    type='Naive',
    train_mb_size=_batch_size,
    eval_mb_size=_batch_size,
    train_epochs=70,
    optimizer=dict(type='SGD', lr=0.01 * _batch_size / 64, momentum=0.9, weight_decay=1e-5),
    scheduler=dict(type='StepLR', step_size=30, gamma=0.1),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
