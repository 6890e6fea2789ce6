"""Class-balanced, square-root and progressive re-sampling of the training set (and deferred re-sampling).

The plugin swaps Avalanche's training dataloader for a weighted one at ``before_training_epoch``;
the schemes are :data:`avalanche_ext.sampling.SAMPLING_SCHEMES`.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import PLUGINS
from avalanche_ext.sampling import SAMPLING_SCHEMES, deferred_epoch, sample_weights, weighted_loader

__all__ = ["ResamplingPlugin"]


@PLUGINS.register_module()
class ResamplingPlugin(SupervisedPlugin):
    """Draws each epoch's minibatches with class-dependent probabilities.

    Each epoch draws as many samples as the experience has (with replacement), so the number of
    iterations, and any ``'auto'`` schedule length, stays that of the plain loader. Before
    ``start_epoch`` the ordinary shuffled loader is kept: ``start_epoch > 0`` is deferred
    re-sampling (DRS, Cao et al. 2019). The loader is rebuilt over ``strategy.adapted_dataset``,
    so do not combine it with plugins that replace the loader themselves (Avalanche's
    ``ReplayPlugin``): the last one to set ``strategy.dataloader`` wins.

    Args:
        mode: ``'class_balanced'`` (every class equally likely), ``'square_root'``
            (``p_c ∝ sqrt(n_c)``), ``'progressive'`` (instance- to class-balanced over the
            epochs), ``'instance'``; any scheme registered in ``SAMPLING_SCHEMES``.
        start_epoch: epoch from which to re-sample (0: always), or a fraction of the experience's
            epochs in ``(0, 1)``.
        seed: seed of the draws (each epoch of each experience draws differently).
    """

    stateless = True  # nothing to checkpoint: the draws depend only on the seed, the experience and the epoch

    def __init__(self, mode: str = "class_balanced", start_epoch: int | float = 0, seed: int = 0):
        super().__init__()
        if mode not in SAMPLING_SCHEMES:
            raise ConfigError(
                f"cl_strategy.plugins.mode: unknown {mode!r}; choose one of "
                f"{', '.join(repr(k) for k in SAMPLING_SCHEMES)}"
            )
        try:
            deferred_epoch(start_epoch, 1, "start_epoch")
        except ValueError as err:
            raise ConfigError(f"cl_strategy.plugins.{err}") from None
        self.mode = mode
        self.start_epoch = start_epoch
        self.seed = seed
        self.last_class_probabilities: torch.Tensor | None = None

    def before_training_epoch(self, strategy, **kwargs):
        epoch = int(strategy.clock.train_exp_epochs)
        epochs = int(strategy.train_epochs)
        if epoch < deferred_epoch(self.start_epoch, epochs):
            return
        dataset = strategy.adapted_dataset
        targets = torch.as_tensor(list(dataset.targets), dtype=torch.long)
        counts = torch.bincount(targets[targets >= 0])
        probabilities = SAMPLING_SCHEMES[self.mode](counts, epoch, epochs)
        self.last_class_probabilities = probabilities
        seed = self.seed * 1_000_003 + int(strategy.clock.train_exp_counter) * 1009 + epoch
        strategy.dataloader = weighted_loader(
            dataset,
            sample_weights(targets, probabilities),
            strategy.train_mb_size,
            len(dataset),
            seed,
        )
