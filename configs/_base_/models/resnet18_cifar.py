# ResNet-18 with the CIFAR stem (3x3 conv, no max-pool): mmpretrain's ResNet_CIFAR.
model = dict(
    type='MMClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=512,
        init_cfg=dict(type='Normal', layer='Linear', std=0.01),
    ),
)
