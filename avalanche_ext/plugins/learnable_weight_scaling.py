"""LWS (Kang et al., ICLR 2020): after an experience, learn one scale per class on
class-balanced batches, backbone and classifier weights frozen."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from avalanche_ext.decoupled import extract_dataset_features, fit_weight_scales
from avalanche_ext.registry import PLUGINS

__all__ = ["LWSPlugin"]


@PLUGINS.register_module()
class LWSPlugin(SupervisedPlugin):
    """Learnable weight scaling at ``after_training_exp``; the factors are folded into the
    classifier (so the model keeps its plain linear head). Features are extracted once, as in
    ``ClassifierRetrainingPlugin``.

    Args:
        epochs: stage-2 epochs.
        lr: stage-2 learning rate.
        batch_size: stage-2 batch size.
        seed: seed of the draws.
    """

    stateless = True  # nothing to checkpoint: the learned scales are part of the model's weights

    def __init__(self, epochs: int = 10, lr: float = 0.1, batch_size: int = 128, seed: int = 0):
        super().__init__()
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.last_scales = None

    def after_training_exp(self, strategy, **kwargs):
        model = strategy.model
        dataset = strategy.adapted_dataset or strategy.experience.dataset
        features, labels = extract_dataset_features(
            model, dataset, strategy.eval_mb_size, strategy.device
        )
        self.last_scales = fit_weight_scales(
            model.classifier,
            features,
            labels,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=self.seed + int(strategy.clock.train_exp_counter),
        ).cpu()
