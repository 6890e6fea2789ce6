# Novel-class discovery, full pipeline, CPU-sized (a few minutes on 2 cores): CIFAR ResNet-20 learns
# 80 long-tailed known classes (base experience), then a discovery experience of 20 novel classes
# (+20 % held-back known images, labels hidden): confidence gate -> bounded novel pool -> k-means
# pseudo-labels -> dual-teacher update. 100 train / 20 test images per class, 3 epochs.
# Plugins and the strategy attributes they share: docs/plugins.md.
_base_ = [
    '../_base_/models/resnet32_cifar.py',
    '../_base_/scenarios/cifar100_known_novel_lt.py',
    '../_base_/schedules/onecycle_sgd.py',
    '../_base_/runtime/default.py',
]

model = dict(backbone=dict(depth=20), head=dict(num_classes=80))  # grows to 80 + k
scenario = dict(train_subset=100, test_subset=20)

# Online phase: score every discovery sample on the 80 known logits; pool those the gate rejects.
_gate = dict(
    type='ConfidenceGatedPoolPlugin',
    score='energy',
    threshold='calibrated',  # on 5 % of the base images, held out (never trained on)
    target_known_recall=0.95,
    calibration_fraction=0.05,
    capacity=1000,
    eviction='most_confident_out',
    trigger_size=100,
)
# Offline update: balanced k-means on the pooled features; cluster c -> class 80 + c.
_clustering = dict(
    type='PseudoLabelClusteringPlugin',
    num_clusters=20,
    backend='auto',
    l2_normalize=True,
    pca_dim=None,
    balanced=True,
    soft=False,
    seed=0,
)
_dual_teacher = dict(
    type='DualTeacherDistillationPlugin',
    alpha_old=1.0,
    alpha_new=1.0,
    temperature=2.0,
    feature_weight=1.0,
    feature_kind='cosine',
    backbone_lr_mult=0.1,
    head_lr_mult=1.0,
    classifier_epochs=1,  # two phases: classifier first, then feature extractor + classifier
    mask_old_logits=True,
    freeze_bn=True,
    calibrate_new_bias=True,
)
cl_strategy = dict(
    train_mb_size=64,
    eval_mb_size=256,
    train_epochs=3,
    plugins=[_gate, _clustering, _dual_teacher],
)
discovery = dict(hungarian='all')
work_dir = 'work_dirs/dualteacher_resnet20_cpu_cifar100-80+20lt'
