# mmpretrain's (sigmoid) focal loss, gamma 2, alpha 0.25 (Lin et al. 2017). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='FocalLoss', gamma=2.0, alpha=0.25, loss_weight=1.0))
