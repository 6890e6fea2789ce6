# LwF baseline at paper scale (GPU): same stream, base schedule, gate, pool and k-means
# pseudo-labels as dualteacher_resnet18_100e_cifar100-80+20lt.py; the update is cross-entropy on
# the pseudo-labels plus LwF's distillation of the previous model (no novel head, no replay, no
# old-vs-new calibration).
_base_ = ['./dualteacher_resnet18_100e_cifar100-80+20lt.py']

cl_strategy = dict(
    plugins=[
        {{_base_._gate}},
        {{_base_._clustering}},
        dict(type='LwFPlugin', alpha=1.0, temperature=2.0),
    ]
)
work_dir = 'work_dirs/lwf_resnet18_100e_cifar100-80+20lt'
