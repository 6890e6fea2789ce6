# Cross-entropy baseline on CIFAR-100-LT (rho 100), ResNet-32, CPU-sized (4 one-cycle epochs).
_base_ = [
    '../_base_/models/resnet32_cifar.py',
    '../_base_/scenarios/cifar100_lt_r100.py',
    '../_base_/schedules/longtail_cpu.py',
    '../_base_/runtime/longtail.py',
]
