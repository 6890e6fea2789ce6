# Square-root re-sampling (p_c proportional to sqrt(n_c), Mahajan et al. 2018). (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ResamplingPlugin', mode='square_root')])
