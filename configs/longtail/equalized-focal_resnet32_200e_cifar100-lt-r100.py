# Equalized focal loss (Li et al. 2022), gamma_b 2, s 8, online gradient statistics. (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='EqualizedFocalLoss', gamma_b=2.0, scale=8.0))
