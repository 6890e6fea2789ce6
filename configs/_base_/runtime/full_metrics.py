# Every Avalanche metric the original demo configured (set num_classes to the scenario's).
_base_ = ['./default.py']
metrics = [
    dict(type='accuracy_metrics', minibatch=True, epoch=True, experience=True, stream=True),
    dict(type='loss_metrics', minibatch=True, epoch=True, experience=True, stream=True),
    dict(type='timing_metrics', epoch=True, epoch_running=True),
    dict(type='cpu_usage_metrics', experience=True),
    dict(type='forgetting_metrics', experience=True, stream=True),
    dict(type='confusion_matrix_metrics', num_classes=100, save_image=True, stream=True),
    dict(type='disk_usage_metrics', minibatch=False, epoch=True, experience=True, stream=True),
]
