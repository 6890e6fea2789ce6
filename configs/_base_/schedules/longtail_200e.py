# The common long-tail CIFAR recipe (LDAM, bag of tricks): SGD lr 0.1, momentum 0.9, batch 128,
# weight decay 2e-4, 200 epochs, 5-epoch linear warm-up, x0.1 at epochs 160 and 180.
custom_imports = dict(imports=['avalanche_ext.lr_warmup'], allow_failed_imports=False)
cl_strategy = dict(
    type='Naive',
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=200,
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=2e-4),
    scheduler=dict(
        type='WarmupMultiStepLR', milestones=[160, 180], gamma=0.1, warmup_epochs=5, by_iteration=False
    ),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
