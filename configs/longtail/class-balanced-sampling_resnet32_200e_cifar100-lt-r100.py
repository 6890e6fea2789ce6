# Class-balanced re-sampling of every epoch (each class equally likely). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='class_balanced')])
