# Novel-class discovery, full pipeline, paper scale (GPU): ResNet-18 (CIFAR stem) on all of
# CIFAR-100's 80 long-tailed known classes (step, rho 0.5), then the 20 novel classes (+20 % held-back
# known images) with hidden labels: gate -> pool -> balanced k-means -> dual-teacher update.
# 100 epochs per experience with a one-cycle schedule.
#   python train_config.py configs/ncd/dualteacher_resnet18_100e_cifar100-80+20lt.py --device cuda
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/scenarios/cifar100_known_novel_lt.py',
    '../_base_/schedules/onecycle_sgd.py',
    '../_base_/runtime/default.py',
]

model = dict(head=dict(num_classes=80))  # grows to 80 + k

_gate = dict(
    type='ConfidenceGatedPoolPlugin',
    score='energy',
    threshold='calibrated',
    target_known_recall=0.95,
    calibration_fraction=0.05,
    capacity=5000,
    eviction='most_confident_out',
    trigger_size=500,
)
_clustering = dict(
    type='PseudoLabelClusteringPlugin',
    num_clusters=20,
    backend='auto',
    l2_normalize=True,
    pca_dim=128,
    balanced=True,
    n_init=3,
    soft=False,
    recluster_every=25,
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
    classifier_epochs=20,
    mask_old_logits=True,
    freeze_bn=True,
    calibrate_new_bias=True,
)
cl_strategy = dict(
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=100,
    plugins=[_gate, _clustering, _dual_teacher],
)
discovery = dict(hungarian='all')
work_dir = 'work_dirs/dualteacher_resnet18_100e_cifar100-80+20lt'
