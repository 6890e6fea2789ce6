# Model Doctor (Feng et al. 2022): cross-entropy, then each class's relevant kernels of the last stage sifted on high-confidence correct training images, then fine-tuning at a small rate with a channel loss on the irrelevant ones. (200-epoch paper recipe, then 50 fine-tuning epochs)
_base_ = ['./ce_resnet32_200e_cifar100-lt-r100.py']
# the plugin's defaults: layers='backbone.layer3', score='gradient', confidence=0.9, classes='all',
# loss_scale=10 (the document's value for ResNets), constraint='abs', no noise
cl_strategy = dict(plugins=[dict(type='ModelDoctorPlugin', epochs=50, lr=1e-3)])
