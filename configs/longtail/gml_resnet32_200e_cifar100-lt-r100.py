# GML (Du & Wu 2023): cross-entropy, then the classifier re-trained on frozen features with the geometric-mean loss, ensembled with the original classifier at evaluation. (200-epoch paper recipe)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
# the plugin's defaults: the trained rows fine-tuned (reinit=False), plain softmax in the loss (tau=0)
cl_strategy = dict(
    plugins=[dict(type='GMLRetrainingPlugin', epochs=10, lr=0.1, ensemble=True, t_new=1.0, t_old=1.0)]
)
