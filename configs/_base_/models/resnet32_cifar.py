# CIFAR ResNet-32 (He et al. 2016; ~0.46 M parameters): the standard long-tail CIFAR backbone.
model = dict(
    type='MMClassifier',
    backbone=dict(type='CifarResNet', depth=32),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        init_cfg=dict(type='Normal', layer='Linear', std=0.01),
    ),
)
