# The baseline Model Doctor must beat: the same sifting and fine-tuning with the channel loss off (loss_scale 0).
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', epochs=50, lr=1e-3, loss_scale=0.0)])
