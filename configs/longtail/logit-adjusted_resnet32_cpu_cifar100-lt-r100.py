# Logit-adjusted cross-entropy, tau 1 (Menon et al. 2021).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='LogitAdjustedLoss', tau=1.0))
