# CLEAR-10, streaming protocol: ResNet-50 (ImageNet stem) trained from scratch bucket after bucket,
# evaluated on every bucket's test/ images (accuracy matrix: in-domain, next-domain, BwT, FwT).
# GPU scale (the original demo's schedule: SGD + StepLR, 70 epochs per bucket).
_base_ = [
    '../_base_/scenarios/clear10.py',
    '../_base_/schedules/step_sgd.py',
    '../_base_/runtime/default.py',
]

model = dict(
    type='MMClassifier',
    backbone=dict(type='ResNet', depth=50),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=11,
        in_channels=2048,
        init_cfg=dict(type='Normal', layer='Linear', std=0.01),
    ),
)
work_dir = 'work_dirs/clear10_resnet50_streaming'
