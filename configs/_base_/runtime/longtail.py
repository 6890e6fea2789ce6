# Runtime of the long-tail configs: the default loggers and metrics; one experience, so one
# checkpoint at the end.
_base_ = ['./default.py']
metrics = [
    dict(type='accuracy_metrics', minibatch=False, epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', minibatch=False, epoch=True, experience=True, stream=True),
    dict(type='timing_metrics', epoch=True),
]
