"""Loss functions: knowledge distillation, evidential (Dirichlet) classification, long-tail losses.

Import the submodules directly (``avalanche_ext.losses.distillation`` ...); nothing is re-exported here.
"""

__all__: list[str] = []
