"""cRT (Kang et al., ICLR 2020): after an experience, re-train the classifier on class-balanced
batches with the backbone frozen."""

from __future__ import annotations

from avalanche.core import SupervisedPlugin

from avalanche_ext.decoupled import extract_dataset_features, fit_classifier_rows
from avalanche_ext.registry import PLUGINS

__all__ = ["ClassifierRetrainingPlugin"]


@PLUGINS.register_module()
class ClassifierRetrainingPlugin(SupervisedPlugin):
    """Classifier re-training (cRT) at ``after_training_exp``.

    The experience's training images are passed once through the frozen backbone (eval mode, the
    evaluation transform: a frozen backbone makes augmentation a second-order effect and this
    keeps stage 2 at seconds on a CPU); the classifier rows of the experience's classes are
    re-initialised and trained for ``epochs`` epochs of class-balanced batches (SGD, momentum 0.9,
    cosine rate). Rows of earlier experiences' classes stay as they were.

    Args:
        epochs: stage-2 epochs (10 in the paper).
        lr: stage-2 learning rate.
        batch_size: stage-2 batch size.
        weight_decay: stage-2 weight decay.
        reinit: re-initialise the rows before training (the paper does); False fine-tunes them.
        seed: seed of the re-initialisation and of the draws.
    """

    stateless = (
        True  # nothing to checkpoint: the re-trained classifier is part of the model's weights
    )

    def __init__(
        self,
        epochs: int = 10,
        lr: float = 0.1,
        batch_size: int = 128,
        weight_decay: float = 5e-4,
        reinit: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.reinit = reinit
        self.seed = seed
        self.last_losses: list[float] = []

    def after_training_exp(self, strategy, **kwargs):
        model = strategy.model
        dataset = strategy.adapted_dataset or strategy.experience.dataset
        features, labels = extract_dataset_features(
            model, dataset, strategy.eval_mb_size, strategy.device
        )
        self.last_losses = fit_classifier_rows(
            model.classifier,
            features,
            labels,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            reinit_std=0.01 if self.reinit else None,
            seed=self.seed + int(strategy.clock.train_exp_counter),
        )
