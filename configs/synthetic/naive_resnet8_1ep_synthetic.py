# Seconds-long experiment on generated images: try any strategy or plugin without data.
_base_ = ['../_base_/runtime/default.py']

train_pipeline = [dict(type='RandomHorizontalFlip', p=0.5), dict(type='ToTensor')]
test_pipeline = [dict(type='ToTensor')]
scenario = dict(
    type='SyntheticStream',
    num_classes=6,
    num_experiences=3,
    images_per_class=24,
    test_images_per_class=8,
    image_size=16,
    seed=0,
)
model = dict(
    type='MMClassifier',
    backbone=dict(type='CifarResNet', depth=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=2, in_channels=64),
)
cl_strategy = dict(
    type='Naive',
    train_mb_size=16,
    eval_mb_size=64,
    train_epochs=1,
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[],
)
metrics = [
    dict(type='accuracy_metrics', epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', epoch=True, experience=True, stream=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
    dict(type='confusion_matrix_metrics', num_classes=6, save_image=True, stream=True),
]
loggers = [dict(type='TextLogger')]
checkpoint_config = dict(interval=1)
