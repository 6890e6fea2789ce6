# A user's own plugin, registered without touching the package: examples/my_plugin.py is imported
# through custom_imports and its type used like any other plugin. Seconds on the synthetic stream.
_base_ = ['../synthetic/naive_resnet8_1ep_synthetic.py']

custom_imports = dict(imports=['examples.my_plugin'], allow_failed_imports=False)
cl_strategy = dict(plugins=[dict(type='GradNormClipPlugin', max_norm=1.0)])
work_dir = 'work_dirs/custom_plugin_synthetic'
