# CIFAR-100 80 known (step long tail, rho 0.5 on half of the classes: the experiment log's
# "LT0.5 step" setting) + 20 novel classes in one unlabeled discovery experience, 20 % of which are
# held-back known-class images. Keys and decisions: docs/scenarios.md.
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
    type="CIFAR100KnownNovelLT",
    dataset="cifar100",
    dataset_root=None,
    novel_classes="last",
    num_novel=20,
    imbalance_type="step",
    imbalance_ratio=0.5,
    step_fraction=0.5,
    num_novel_experiences=1,
    novel_shots=None,
    old_fraction=0.2,
    num_known=None,  # None: every non-novel class is known (the paper protocol)
    hide_novel_labels=True,
    image_size=None,
    train_subset=None,
    test_subset=None,
    seed=0,
)
