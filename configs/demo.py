# The demo: class-incremental CIFAR-100 (5 experiences x 20 classes), CIFAR ResNet-32, Naive + LwF,
# every Avalanche metric of the original demo, Text + Interactive loggers. Sized for a 2-core CPU
# (see README: measured time and accuracy). configs/demo_full.py is the paper-scale GPU version.
_base_ = [
    '_base_/models/resnet32_cifar.py',
    '_base_/schedules/onecycle_sgd.py',
    '_base_/runtime/full_metrics.py',
]

img_norm_cfg = dict(mean=[0.5071, 0.4865, 0.4409], std=[0.2673, 0.2564, 0.2762])
train_pipeline = [
    dict(type='RandomCrop', size=32, padding=4),
    dict(type='RandomHorizontalFlip', p=0.5),
    dict(type='ToTensor'),
    dict(type='Normalize', **img_norm_cfg),
]
test_pipeline = [
    dict(type='ToTensor'),
    dict(type='Normalize', **img_norm_cfg),
]

scenario = dict(
    type='CIFAR100ClassIncremental',
    num_experiences=5,
    class_order='random',
    seed=1993,  # the class order of iCaRL / PyCIL
    train_transform=train_pipeline,
    eval_transform=test_pipeline,
)

# The head starts with the first experience's 20 classes and grows as new ones arrive.
model = dict(head=dict(num_classes=20))

cl_strategy = dict(
    type='Naive',
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=2,
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True),
    scheduler=dict(type='OneCycleLR', max_lr=0.1, total_steps='auto', pct_start=0.25),
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    plugins=[dict(type='LwFPlugin', alpha=1.0, temperature=2.0)],
)

metrics = [
    dict(type='accuracy_metrics', minibatch=True, epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', minibatch=True, epoch=True, experience=True, stream=True),
    dict(type='timing_metrics', epoch=True, epoch_running=True),
    dict(type='cpu_usage_metrics', experience=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
    dict(type='confusion_matrix_metrics', num_classes=100, save_image=True, stream=True),
    dict(type='disk_usage_metrics', experience=True, stream=True),
]
loggers = [dict(type='TextLogger'), dict(type='InteractiveLogger')]
checkpoint_config = dict(interval=1)
work_dir = 'work_dirs/demo'
seed = 0
