# Progressive re-sampling: instance-balanced at the first epoch to class-balanced at the last (Kang et al. 2020). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='progressive')])
