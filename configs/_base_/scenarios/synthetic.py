# Generated block-colour images (no data needed): 10 classes in 5 experiences, 100 train / 20 test
# images per class; a small CNN learns them in one or two epochs. Keys: docs/scenarios.md.
# No flips or crops: a mirrored pattern would be another class's look-alike.
train_pipeline = [
    dict(type="ToTensor"),
    dict(type="Normalize", mean=[0.5, 0.5, 0.5], std=[0.3, 0.3, 0.3]),
]
test_pipeline = train_pipeline
scenario = dict(
    type="SyntheticStream",
    num_classes=10,
    num_experiences=5,
    images_per_class=100,
    test_images_per_class=20,
    image_size=32,
    seed=0,
    hidden_novel=0,
    long_tail_ratio=None,
    old_fraction=0.0,
    noise=0.25,
)
