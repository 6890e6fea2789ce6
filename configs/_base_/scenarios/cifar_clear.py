# CLEAR's format on real CIFAR-100 pixels (20 superclasses drifting over 5 buckets), 32x32, CPU-sized.
# Write the tree first: python tools/make_cifar_clear.py data/cifar_clear (docs/clear.md).
_img_norm_cfg = dict(mean=[0.5071, 0.4865, 0.4409], std=[0.2673, 0.2564, 0.2762])
train_pipeline = [
    dict(type='RandomCrop', size=32, padding=4),
    dict(type='RandomHorizontalFlip', p=0.5),
    dict(type='ToTensor'),
    dict(type='Normalize', **_img_norm_cfg),
]
test_pipeline = [
    dict(type='ToTensor'),
    dict(type='Normalize', **_img_norm_cfg),
]
scenario = dict(
    type='CLEAR',
    data_name='clear10',  # the newer layout (train/ + test/), which make_cifar_clear writes
    dataset_root='data/cifar_clear',
    evaluation_protocol='streaming',
    feature_type=None,
    seed=None,
    shot=None,
)
