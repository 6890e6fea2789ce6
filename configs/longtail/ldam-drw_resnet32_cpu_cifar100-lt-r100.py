# LDAM loss + deferred re-weighting (Cao et al. 2019; published anchor 42.5 top-1 at 200 epochs). DRW switches at 80 % of the epochs (epoch 160 of 200).
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(
    loss=dict(_delete_=True, type='LDAMLoss', max_margin=0.5, scale=1.0),
    plugins=[dict(type='DRWPlugin', start_epoch=0.8, beta=0.9999)],
)
