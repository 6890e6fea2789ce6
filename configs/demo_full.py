# Paper-scale version of the demo for a GPU: ResNet-18 with the CIFAR stem, 70 epochs per experience,
# SGD with a step schedule. `python train_config.py configs/demo_full.py --device cuda`
_base_ = ['./demo.py']

model = dict(
    backbone=dict(_delete_=True, type='ResNet_CIFAR', depth=18),
    head=dict(num_classes=20, in_channels=512),
)
cl_strategy = dict(
    train_mb_size=128,
    eval_mb_size=512,
    train_epochs=70,
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False),
    scheduler=dict(_delete_=True, type='MultiStepLR', milestones=[49, 63], gamma=0.1),
    plugins=[dict(type='ReplayPlugin', mem_size=2000), dict(type='LwFPlugin', alpha=1.0, temperature=2.0)],
)
work_dir = 'work_dirs/demo_full'
