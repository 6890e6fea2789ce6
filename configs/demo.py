# The demo: class-incremental CIFAR-100 (5 experiences x 20 classes), CIFAR ResNet-32, Naive + LwF,
# every Avalanche metric of the original demo, Text + Interactive loggers. Sized for a 2-core CPU
# (README: measured time and accuracy). configs/demo_full.py is the paper-scale GPU version.
_base_ = [
    '_base_/models/resnet32_cifar.py',
    '_base_/scenarios/cifar100_class_incremental.py',
    '_base_/schedules/onecycle_sgd.py',
    '_base_/runtime/full_metrics.py',
]

scenario = dict(class_order='random', seed=1993)  # a seeded random class order, as CIL papers use

# The head starts with the first experience's 20 classes and grows as new ones arrive.
model = dict(head=dict(num_classes=20))

cl_strategy = dict(
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=2,
    plugins=[dict(type='LwFPlugin', alpha=1.0, temperature=2.0)],
)
# disk usage per minibatch walks the work dir 400 times: per experience is enough here.
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
work_dir = 'work_dirs/demo'
