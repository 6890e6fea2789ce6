# Cross-entropy baseline on CIFAR-100-LT (rho 100), ResNet-32, the 200-epoch paper recipe
# (published anchor: 38.3 top-1; the source documents' own run: 40.58).
_base_ = [
    '../_base_/models/resnet32_cifar.py',
    '../_base_/scenarios/cifar100_lt_r100.py',
    '../_base_/schedules/longtail_200e.py',
    '../_base_/runtime/longtail.py',
]
