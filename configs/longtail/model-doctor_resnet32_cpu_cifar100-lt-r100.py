# Model Doctor (Feng et al. 2022): cross-entropy, then each class's relevant kernels of the last stage sifted on high-confidence correct training images, then fine-tuning at a small rate with a channel loss on the irrelevant ones.
_base_ = ['./ce_resnet32_cpu_cifar100-lt-r100.py']
# the plugin's defaults: layers='backbone.layer3', score='gradient', confidence=0.9, classes='all',
# loss_scale=10 (the document's value for ResNets), constraint='abs', no noise
cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', epochs=2, lr=1e-3)])
