# The default runtime plus TensorBoard: event files in <run folder>/tb_data
# (tensorboard --logdir work_dirs), and the per-epoch CSV files in <run folder>/csvlogs.
_base_ = ['./default.py']
loggers = [
    dict(type='TextLogger'),
    dict(type='InteractiveLogger'),
    dict(type='TensorboardLogger'),
    dict(type='CSVLogger'),
]
