# CLEAR-10 (newer layout: train/ + test/, buckets "1".."10", 11 classes incl. BACKGROUND) at
# ImageNet resolution. dataset_root = the unpacked release; nothing is downloaded (docs/clear.md).
_img_norm_cfg = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
train_pipeline = [
    dict(type='RandomResizedCrop', size=224),
    dict(type='RandomHorizontalFlip', p=0.5),
    dict(type='ToTensor'),
    dict(type='Normalize', **_img_norm_cfg),
]
test_pipeline = [
    dict(type='Resize', size=256),
    dict(type='CenterCrop', size=224),
    dict(type='ToTensor'),
    dict(type='Normalize', **_img_norm_cfg),
]
scenario = dict(
    type='CLEAR',
    data_name='clear10',
    dataset_root='data/CLEAR-10',
    evaluation_protocol='streaming',  # train on bucket t, test on every bucket's test/ images
    feature_type=None,
    seed=None,
    shot=None,
)
