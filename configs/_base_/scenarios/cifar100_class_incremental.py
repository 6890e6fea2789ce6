# Class-incremental CIFAR-100: 5 experiences of 20 classes in the original class order, on the
# in-memory uint8 tensors (much faster than Avalanche's SplitCIFAR100). Keys: docs/scenarios.md.
_cifar100_mean = [0.5071, 0.4865, 0.4409]
_cifar100_std = [0.2673, 0.2564, 0.2762]
train_pipeline = [
    dict(type="RandomCrop", size=32, padding=4),
    dict(type="RandomHorizontalFlip"),
    dict(type="ToTensor"),
    dict(type="Normalize", mean=_cifar100_mean, std=_cifar100_std),
]
test_pipeline = [
    dict(type="ToTensor"),
    dict(type="Normalize", mean=_cifar100_mean, std=_cifar100_std),
]
scenario = dict(
    type="CIFAR100ClassIncremental",
    num_experiences=5,
    class_order=None,
    seed=0,
    dataset_root=None,
    train_subset=None,
    test_subset=None,
)
