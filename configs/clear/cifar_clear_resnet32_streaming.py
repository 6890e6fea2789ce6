# CLEAR's streaming protocol on real pixels, CPU-sized: CIFAR-100's 20 superclasses drift over
# 5 buckets (bucket b: mostly fine class b of each superclass), CIFAR ResNet-32.
# Write the tree first: python tools/make_cifar_clear.py data/cifar_clear
_base_ = [
    '../_base_/models/resnet32_cifar.py',
    '../_base_/scenarios/cifar_clear.py',
    '../_base_/schedules/onecycle_sgd.py',
    '../_base_/runtime/default.py',
]

model = dict(head=dict(num_classes=20))
cl_strategy = dict(train_mb_size=64, eval_mb_size=256, train_epochs=4)
work_dir = 'work_dirs/cifar_clear_resnet32_streaming'
