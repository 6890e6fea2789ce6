"""Pure metric functions (accuracy matrices, long-tail, discovery) and their Avalanche wrappers.

Import the submodules directly (``avalanche_ext.metrics.streaming`` ...); nothing is re-exported here.
"""
