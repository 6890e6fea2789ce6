# Class-balanced re-sampling of every epoch (each class equally likely).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='class_balanced')])
