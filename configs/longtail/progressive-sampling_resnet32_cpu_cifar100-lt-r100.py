# Progressive re-sampling: instance-balanced at the first epoch to class-balanced at the last (Kang et al. 2020).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='progressive')])
