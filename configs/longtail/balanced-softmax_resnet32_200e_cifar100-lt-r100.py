# Balanced softmax cross-entropy (Ren et al. 2020; published anchor 43.0 top-1 at 200 epochs). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='BalancedSoftmaxLoss'))
