"""GML classifier re-training (Du & Wu, CVPR 2023): after an experience, re-train the classifier
on frozen features with the GML loss, optionally ensembled with the original classifier."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from avalanche_ext.decoupled import extract_dataset_features, fit_classifier_rows
from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.gml import gml_ensemble_logits, gml_loss
from avalanche_ext.ncd_state import MASKED_LOGIT, discovery_state
from avalanche_ext.registry import PLUGINS

__all__ = ["GMLRetrainingPlugin"]


@PLUGINS.register_module()
class GMLRetrainingPlugin(SupervisedPlugin):
    """The GML plug-in at ``after_training_exp``, on the decoupled stage of cRT.

    The experience's training images go once through the frozen backbone (eval transform); the
    classifier rows of its classes are re-trained for ``epochs`` epochs with the GML loss
    (:func:`avalanche_ext.losses.gml.gml_loss`) on class-balanced batches (SGD, momentum 0.9,
    cosine rate), starting from the trained rows (``reinit=False``, the default: the plug-in keeps
    what the trained model learned) or from a fresh initialisation. With ``ensemble=True`` the classifier as
    it was before re-training is kept and every evaluation logit becomes
    ``log((softmax(z_new / t_new) + softmax(z_old / t_old)) / 2)``.

    Args:
        epochs: re-training epochs.
        lr: re-training learning rate.
        batch_size: re-training batch size.
        weight_decay: re-training weight decay.
        reinit: re-initialise the rows first (cRT's choice) instead of fine-tuning them.
        tau: logit adjustment inside the GML softmax (0: none).
        ensemble: ensemble the re-trained and the original classifier at evaluation.
        t_new: temperature of the re-trained classifier in the ensemble.
        t_old: temperature of the original classifier in the ensemble.
        seed: seed of the re-initialisation and of the draws.
    """

    needs_class_counts = True

    def __init__(
        self,
        epochs: int = 10,
        lr: float = 0.1,
        batch_size: int = 128,
        weight_decay: float = 5e-4,
        reinit: bool = False,
        tau: float = 0.0,
        ensemble: bool = False,
        t_new: float = 1.0,
        t_old: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        for key, value in (("t_new", t_new), ("t_old", t_old)):
            if not value > 0:
                raise ConfigError(f"cl_strategy.plugins.{key}: must be > 0, got {value}")
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.weight_decay, self.reinit, self.tau = float(weight_decay), bool(reinit), float(tau)
        self.ensemble, self.t_new, self.t_old = bool(ensemble), float(t_new), float(t_old)
        self.seed = int(seed)
        self.old_weight: torch.Tensor | None = None
        self.old_bias: torch.Tensor | None = None
        self.last_losses: list[float] = []

    def after_training_exp(self, strategy, **kwargs):
        model = strategy.model
        layer = model.classifier
        self.old_weight = layer.weight.detach().clone()
        self.old_bias = None if layer.bias is None else layer.bias.detach().clone()
        dataset = strategy.experience.dataset
        features, labels = extract_dataset_features(
            model, dataset, strategy.eval_mb_size, strategy.device
        )
        counts = discovery_state(strategy).class_counts
        self.last_losses = fit_classifier_rows(
            layer,
            features,
            labels,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            reinit_std=0.01 if self.reinit else None,
            seed=self.seed + int(strategy.clock.train_exp_counter),
            loss_fn=lambda z, y: gml_loss(z, y, counts, self.tau),
        )

    def old_logits(self, features: torch.Tensor, width: int) -> torch.Tensor:
        """The original classifier's logits, padded with a masked value to ``width`` classes
        (rows the head gained since it was kept get no probability from it)."""
        weight = self.old_weight.to(features)
        bias = None if self.old_bias is None else self.old_bias.to(features)
        logits = F.linear(features, weight, bias)[:, :width]
        if logits.shape[1] < width:
            pad = logits.new_full((len(logits), width - logits.shape[1]), MASKED_LOGIT)
            logits = torch.cat([logits, pad], 1)
        return logits

    def after_eval_forward(self, strategy, **kwargs):
        features = getattr(strategy.model, "last_features", None)
        if not self.ensemble or self.old_weight is None or features is None:
            return
        new = strategy.mb_output
        old = self.old_logits(features.detach(), new.shape[1])
        strategy.mb_output = gml_ensemble_logits(new, old, self.t_new, self.t_old)

    def state_dict(self) -> dict[str, Any]:
        """The original classifier kept for the ensemble (the re-trained one is the model's)."""
        return {"old_weight": self.old_weight, "old_bias": self.old_bias}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.old_weight = copy.deepcopy(state.get("old_weight"))
        self.old_bias = copy.deepcopy(state.get("old_bias"))
