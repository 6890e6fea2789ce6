# CLEAR-100 (newer layout: train/ + test/, buckets "1".."10"; classes from class_names.txt):
# the CLEAR-10 base with another release. Keys and layouts: docs/clear.md.
_base_ = ['./clear10.py']
scenario = dict(data_name='clear100', dataset_root='data/CLEAR-100')
