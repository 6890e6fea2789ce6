# GML (Du & Wu 2023): cross-entropy, then the classifier re-trained on frozen features with the geometric-mean loss, ensembled with the original classifier at evaluation.
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
cl_strategy = dict(
    plugins=[
        dict(
            type='GMLRetrainingPlugin',
            epochs=10,
            lr=0.1,
            batch_size=128,
            reinit=False,
            tau=0.0,
            ensemble=True,
            t_new=1.0,
            t_old=1.0,
        )
    ]
)
