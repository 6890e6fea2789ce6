# Decoupled: cross-entropy, then tau-normalised classifier rows, tau 1 (Kang et al. 2020).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='TauNormalizationPlugin', tau=1.0)])
