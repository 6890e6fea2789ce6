# Reduced focal loss, threshold 0.5, gamma 2 (the source documents' REFL: 41.77 top-1 vs CE 40.58).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(loss=dict(_delete_=True, type='ReducedFocalLoss', gamma=2.0, threshold=0.5))
