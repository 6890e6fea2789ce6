# LwF baseline of the discovery pipeline, CPU-sized: the same stream, gate, pool and k-means
# pseudo-labels as dualteacher_resnet20_cpu_cifar100-80+20lt.py, but the update is plain
# cross-entropy on the pseudo-labels plus LwF's distillation of every output of the previous model
# (no dual teacher: no backbone/classifier schedule, no old/new calibration).
_base_ = ['./dualteacher_resnet20_cpu_cifar100-80+20lt.py']

cl_strategy = dict(
    plugins=[
        {{_base_._gate}},
        {{_base_._clustering}},
        dict(type='LwFPlugin', alpha=1.0, temperature=2.0),
    ]
)
work_dir = 'work_dirs/lwf_resnet20_cpu_cifar100-80+20lt'
