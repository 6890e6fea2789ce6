# Class-balanced cross-entropy: effective-number weights, beta 0.9999 (Cui et al. 2019); the counts come from the experience.
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='ClassBalancedLoss', base_loss=dict(type='CrossEntropyLoss'), beta=0.9999))
