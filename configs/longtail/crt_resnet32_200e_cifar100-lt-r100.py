# Decoupled: cross-entropy, then classifier re-training on class-balanced batches with the backbone frozen (cRT, Kang et al. 2020). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ClassifierRetrainingPlugin', epochs=10, lr=0.1, batch_size=128)])
