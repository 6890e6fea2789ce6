# The demo: class-incremental CIFAR-100, 80 classes then 20 new ones (the 80+20 split of
# CIFAR100KnownNovelLT with labels shown and no long tail), CIFAR ResNet-32, Naive + LwF + a replay
# buffer of 2,000 images, every Avalanche metric of the original demo, Text + Interactive loggers.
# Sized for a 2-core CPU (README: measured time and accuracy); configs/demo_full.py is the GPU version.
_base_ = [
    '_base_/models/resnet32_cifar.py',
    '_base_/scenarios/cifar100_known_novel_lt.py',
    '_base_/schedules/onecycle_sgd.py',
    '_base_/runtime/full_metrics.py',
]

scenario = dict(
    imbalance_type='none',  # balanced: the long tail is the NCD configs' business
    old_fraction=0.0,  # every known-class image goes to the first experience
    hide_novel_labels=False,  # labeled new classes: class-incremental learning
)

# The head starts with the 80 classes of the first experience and grows to 100.
model = dict(head=dict(num_classes=80))

cl_strategy = dict(
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=2,
    plugins=[
        # LwF alone cannot stop class-incremental forgetting: its KD is blind to a shift of all old
        # logits against the new ones. 2,000 replayed images (20 per class) give CE old negatives.
        dict(type='ReplayPlugin', mem_size=2000),
        dict(type='LwFPlugin', alpha=1.0, temperature=2.0),
    ],
)
# disk usage per minibatch walks the work dir at every step: per experience is enough here.
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
# The test stream already holds the known (experience 0) and new (experience 1) classes: the
# scenario's extra known/novel/all streams would triple the evaluation time for the same numbers.
eval_streams = []
work_dir = 'work_dirs/demo'
