# Runtime defaults shared by every experiment: loggers, metrics, checkpoints, seed.
loggers = [
    dict(type='TextLogger'),  # a timestamped .log file in the run folder
    dict(type='InteractiveLogger'),  # tqdm progress bars
]
metrics = [
    dict(type='accuracy_metrics', minibatch=False, epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', minibatch=False, epoch=True, experience=True, stream=True),
    dict(type='timing_metrics', epoch=True, epoch_running=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
]
checkpoint_config = dict(interval=1)
seed = 0
