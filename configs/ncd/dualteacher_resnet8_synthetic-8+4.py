# Discovery on generated images, seconds on a CPU: 8 labeled classes (one experience), then 4 novel
# classes arriving unlabeled (+20 % held-back known images). The full pipeline: feature-space gate,
# semi-supervised k-means with the known prototypes fixed, dual-teacher update with old-class
# feature replay and an old-vs-new offset calibrated on held-out known images. The discovery tests
# run this config and assert real quality on it (tests/test_strategies/test_discovery_quality.py).
_base_ = ['../_base_/runtime/default.py']

train_pipeline = [dict(type='ToTensor'), dict(type='Normalize', mean=[0.5, 0.5, 0.5], std=[0.3, 0.3, 0.3])]
test_pipeline = train_pipeline
scenario = dict(
    type='SyntheticStream',
    num_classes=12,
    num_experiences=1,
    images_per_class=60,
    test_images_per_class=20,
    image_size=16,
    seed=0,
    hidden_novel=4,
    old_fraction=0.2,
    noise=0.25,
    train_transform=train_pipeline,
    eval_transform=test_pipeline,
)
model = dict(
    type='MMClassifier',
    backbone=dict(type='CifarResNet', depth=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=8, in_channels=64),
)
cl_strategy = dict(
    type='Naive',
    train_mb_size=32,
    eval_mb_size=256,
    train_epochs=3,
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[
        dict(type='ConfidenceGatedPoolPlugin', score='cosine_prototype', threshold='calibrated',
             target_known_recall=0.95, calibration_fraction=0.1, trigger_size=50),
        dict(type='PseudoLabelClusteringPlugin', num_clusters=4, known_centres=True, n_init=3,
             init_new_rows=True),
        dict(type='DualTeacherDistillationPlugin', alpha_old=1.0, feature_weight=1.0,
             replay_weight=1.0, backbone_lr_mult=0.1, calibrate_new_bias=True,
             known_false_novel_rate=0.05, freeze_bn=True, max_grad_norm=1.0),
    ],
)
metrics = [
    dict(type='accuracy_metrics', epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', epoch=True, experience=True, stream=True),
]
eval_streams = []
loggers = []
