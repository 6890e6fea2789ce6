# Cross-entropy training, post-hoc logit adjustment at evaluation (tau 1, Menon et al. 2021). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='PosthocLogitAdjustmentPlugin', tau=1.0)])
