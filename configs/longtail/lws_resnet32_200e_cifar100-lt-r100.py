# Decoupled: cross-entropy, then learnable weight scaling on class-balanced batches (LWS, Kang et al. 2020). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='LWSPlugin', epochs=10, lr=0.1, batch_size=128)])
