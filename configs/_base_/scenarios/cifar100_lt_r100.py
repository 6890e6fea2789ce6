# CIFAR-100-LT, exponential profile, imbalance 100 (n_max / n_min; 0.01 means the same), the
# balanced 10,000-image test set: 10,847 training images, 500 (class 0) down to 5 (class 99).
_cifar100_mean = [0.5071, 0.4865, 0.4409]
_cifar100_std = [0.2673, 0.2564, 0.2762]
train_pipeline = [
    dict(type='RandomCrop', size=32, padding=4),
    dict(type='RandomHorizontalFlip'),
    dict(type='ToTensor'),
    dict(type='Normalize', mean=_cifar100_mean, std=_cifar100_std),
]
test_pipeline = [
    dict(type='ToTensor'),
    dict(type='Normalize', mean=_cifar100_mean, std=_cifar100_std),
]
scenario = dict(
    type='CIFAR100LT',
    imbalance_type='exp',
    imbalance_ratio=100,
    n_max=500,
    num_experiences=1,
    class_order=None,
    tail_order='class_order',
    test_subset=None,
    seed=0,
    train_transform=train_pipeline,
    eval_transform=test_pipeline,
)
# The usual shot groups of CIFAR-100-LT: many > 100 images, few < 20.
long_tail = dict(many=100, few=20)
