# Cross-entropy with deferred re-sampling: class-balanced batches from 80 % of the epochs on (Cao et al. 2019). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='class_balanced', start_epoch=160)])
