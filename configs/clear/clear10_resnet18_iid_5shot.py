# CLEAR-10, iid protocol, 5 training images per class per bucket (seeded), ResNet-18 (ImageNet stem).
# Write the few-shot files first: python tools/clear_dataset.py fewshot data/CLEAR-10 --shot 5 --seed 0
_base_ = [
    '../_base_/scenarios/clear10.py',
    '../_base_/schedules/step_sgd.py',
    '../_base_/runtime/default.py',
]

scenario = dict(evaluation_protocol='iid', seed=0, shot=5)
model = dict(
    type='MMClassifier',
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=11,
        in_channels=512,
        init_cfg=dict(type='Normal', layer='Linear', std=0.01),
    ),
)
cl_strategy = dict(train_mb_size=32, eval_mb_size=128)  # 55 training images per bucket
work_dir = 'work_dirs/clear10_resnet18_iid_5shot'
