# The CPU-sized discovery pipeline with an evidential classifier: the model is trained with
# EvidentialLoss (Dirichlet evidence, Sensoy et al. 2018) and the gate scores novelty as the
# Dirichlet uncertainty K / S of the 80 known-class outputs.
_base_ = ['./dualteacher_resnet20_cpu_cifar100-80+20lt.py']

# The KL regulariser is annealed over the epochs of each experience (the runner calls
# EvidentialLoss.set_epoch before every epoch): weight min(1, epoch / annealing_step).
# annealing_step=0 (full weight from the first step) keeps an 80-class model from learning at all.
cl_strategy = dict(
    loss=dict(
        _delete_=True, type='EvidentialLoss', evidence='softplus', kind='log', annealing_step=10
    ),
    plugins=[
        dict(
            type='ConfidenceGatedPoolPlugin',
            score='evidential',
            score_kwargs=dict(evidence='softplus'),  # the loss's evidence function
            threshold='calibrated',
            target_known_recall=0.95,
            calibration_fraction=0.05,
            capacity=1000,
            eviction='most_confident_out',
            trigger_size=100,
        ),
        {{_base_._clustering}},
        {{_base_._dual_teacher}},
    ],
)
work_dir = 'work_dirs/dualteacher-evidential_resnet20_cpu_cifar100-80+20lt'
