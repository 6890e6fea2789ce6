# CLEAR-10 (NeurIPS'21 release) linear probe on the released MoCo-v2 features (ResNet-50 trained on
# bucket 0, 2048-d): no images are decoded, a CPU run takes seconds per bucket.
_base_ = [
    '../_base_/scenarios/clear10.py',
    '../_base_/runtime/default.py',
]

scenario = dict(
    data_name='clear10_neurips2021',
    dataset_root='data/CLEAR-10-PUBLIC',
    feature_type='moco_b0',  # training_folder/features/moco_b0/<bucket>/all.pth
    seed=0,  # held-out images = the test part of testset_ratio_0.3/split_0
    train_transform=None,  # features need no image pipeline
    eval_transform=None,
)
model = dict(
    type='MMClassifier',
    backbone=None,  # inputs are features already
    neck=None,
    head=dict(type='LinearClsHead', num_classes=11, in_channels=2048),
)
cl_strategy = dict(
    type='Naive',
    train_mb_size=256,
    eval_mb_size=1024,
    train_epochs=30,
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0),
    scheduler=dict(type='StepLR', step_size=20, gamma=0.1),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
work_dir = 'work_dirs/clear10_linear_moco_b0'
