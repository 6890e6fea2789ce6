# The demo: class-incremental CIFAR-100, 80 classes then 20 new ones (the 80+20 split of
# CIFAR100KnownNovelLT with labels shown and no long tail), CIFAR ResNet-14, Naive + LwF + a replay
# buffer of 2,000 images, every Avalanche metric of the original demo, Text + Interactive loggers.
# Sized for 10 minutes on a slow 2-core CPU (docs/demo.md: measured time and accuracy);
# configs/demo_full.py is the GPU version.
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

# ResNet-14: 1.4x the images/s of ResNet-20 on these CPUs, and at 3 base epochs it is as accurate
# (36.8 % vs 36.6 % on the 80 base classes, README). The head starts with the first experience's 80.
model = dict(backbone=dict(depth=14), head=dict(num_classes=80))

cl_strategy = dict(
    train_mb_size=128,
    eval_mb_size=512,
    # 3 epochs on the 80 base classes carry the learning; 1 epoch adds the 20 new ones
    train_epochs=[3, 1],
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    # one cycle per experience; the new classes are learned at half the rate (less forgetting)
    scheduler=dict(
        type='OneCycleLR', max_lr=0.2, total_steps='auto', pct_start=0.25, lr_scale=[1.0, 0.5]
    ),
    plugins=[
        # LwF alone cannot stop class-incremental forgetting: its KD is blind to a shift of all old
        # logits against the new ones. 2,000 replayed images (25 per old class) give CE old negatives,
        # 128 of them next to every 128 new images. Weight aligning is OFF: measured from the same
        # experience-1 checkpoint it took the old classes from 22.7 % to 4.9 % (README).
        dict(type='ReplayPlugin', mem_size=2000, batch_size_mem=128),
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
