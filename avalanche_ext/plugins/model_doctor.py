"""Model Doctor (Feng et al., AAAI 2022): after an experience, sift each class's relevant kernels on
high-confidence correct training images, then fine-tune with a loss on the irrelevant ones."""

from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch.utils.data import DataLoader

from avalanche_ext.data.batched import iter_batches, mix_seed, model_memory_format
from avalanche_ext.errors import ConfigError
from avalanche_ext.losses.model_doctor import CHANNEL_CONSTRAINTS, CHANNEL_SCORES
from avalanche_ext.model_doctor import (
    constrained_finetune,
    resolve_layers,
    sift_kernels,
    training_batches,
)
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.plugin_helpers import eval_mode
from avalanche_ext.registry import PLUGINS
from avalanche_ext.sampling import class_sampling_probabilities, sample_weights, weighted_loader

__all__ = ["ModelDoctorPlugin"]

_KEY = "cl_strategy.plugins"


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{_KEY}.{name}: expected one of {sorted(choices)}, got {value!r}")


def _num_classes(model, dataset, device) -> int:
    """The width of the model's output (the head's rows)."""
    known = getattr(model, "num_classes", None)
    if known:
        return int(known)
    with eval_mode(model), torch.no_grad():
        return int(model(next(training_batches(dataset, 2, device, model))[0]).shape[1])


@PLUGINS.register_module()
class ModelDoctorPlugin(SupervisedPlugin):
    """Kernel sifting and constrained fine-tuning at ``after_training_exp``.

    1. Sifting: the experience's TRAINING images (evaluation transform, never a test image) go
       through the trained model in eval mode; those predicted correctly with probability
       ``>= confidence`` give, per class, the gradient of the class score at each layer of
       ``layers``; the channels above the class's mean score are its relevant kernels.
    2. Fine-tuning: ``epochs`` epochs on the same training images (train transform) with the
       strategy's loss plus ``loss_scale`` times the gradient mass of each image's class score on
       its class's irrelevant channels, SGD from ``lr`` with a cosine decay. ``loss_scale=0`` is
       the same fine-tuning without the constraint: the comparison that tells whether the
       constraint itself helps.

    The masks are plugin state (saved in every checkpoint) and appear in ``results.json`` under
    ``model_doctor`` and as a classes x channels figure in the report.

    Args:
        layers: module names of ``model.named_modules()`` (e.g. ``'backbone.layer3'``, the last
            stage; ``'backbone.layer3.4.conv2'``; several for the last N layers).
        score: ``'gradient'`` (the paper's), ``'positive_gradient'``,
            ``'positive_activation_gradient'``, ``'positive_activation'``, or a list of them.
        combine: with several scores, ``'intersection'`` or ``'union'`` of their masks.
        confidence: minimum softmax probability of a sifting image's true class.
        max_images_per_class: at most this many sifting images per class (None: all).
        classes: the constrained classes: ``'all'``, ``'tail'`` (the ``tail_fraction`` of classes
            with the fewest training images) or a list of class ids.
        tail_fraction: share of classes that ``'tail'`` takes.
        loss_scale: weight of the channel loss, >= 0 (the document's value for ResNet-50, 10, by
            default; it used 1 for VGG-16; 0 turns the constraint off).
        constraint: ``'abs'`` (suppress |gradient|), ``'positive'`` (positive gradients only) or
            ``'positive_all_negative'`` (positive gradients on the irrelevant channels and
            negative gradients on every channel: the document's sixth variant).
        noise_std: Gaussian noise on the constrained layers' outputs while fine-tuning, in standard
            deviations of the output (0: off; the document found noise can stall training).
        epochs: fine-tuning epochs (0: sift only).
        lr: fine-tuning learning rate (small; the document's best were 1e-3 down to 1e-5).
        batch_size: fine-tuning and sifting batch size.
        weight_decay: fine-tuning weight decay.
        sampling: ``'instance'`` or ``'class_balanced'`` fine-tuning batches.
        seed: seed of the fine-tuning batches.
    """

    needs_class_counts = True
    # The run's probe calls before_training on copies: a bad layer or class id fails before any write.
    probe_experience_hooks = ("before_training",)

    def __init__(
        self,
        layers: str | list[str] = "backbone.layer3",
        score: str | list[str] = "gradient",
        combine: str = "intersection",
        confidence: float = 0.9,
        max_images_per_class: int | None = None,
        classes: str | list[int] = "all",
        tail_fraction: float = 0.2,
        loss_scale: float = 10.0,
        constraint: str = "abs",
        noise_std: float = 0.0,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 2e-4,
        sampling: str = "instance",
        seed: int = 0,
    ):
        super().__init__()
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        self.scores = [score] if isinstance(score, str) else list(score)
        for s in self.scores:
            _check_choice("score", s, CHANNEL_SCORES)
        _check_choice("combine", combine, {"intersection", "union"})
        _check_choice("constraint", constraint, set(CHANNEL_CONSTRAINTS))
        _check_choice("sampling", sampling, {"instance", "class_balanced"})
        if isinstance(classes, str):
            _check_choice("classes", classes, {"all", "tail"})
        elif any(not isinstance(c, int) or c < 0 for c in classes):
            raise ConfigError(f"{_KEY}.classes: expected 'all', 'tail' or class ids >= 0")
        if not loss_scale >= 0:
            raise ConfigError(f"{_KEY}.loss_scale: must be >= 0, got {loss_scale}")
        if not 0 < tail_fraction <= 1:
            raise ConfigError(f"{_KEY}.tail_fraction: must be in (0, 1], got {tail_fraction}")
        self.combine, self.constraint, self.sampling = combine, constraint, sampling
        self.confidence, self.max_images_per_class = confidence, max_images_per_class
        self.classes, self.tail_fraction = classes, tail_fraction
        self.loss_scale, self.noise_std = float(loss_scale), float(noise_std)
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.weight_decay, self.seed = float(weight_decay), int(seed)
        self.masks: dict[str, torch.Tensor] = {}
        self.images_per_class = torch.zeros(0, dtype=torch.long)
        self.constrained_classes: list[int] = []
        self.last_losses: list[float] = []

    def before_training(self, strategy, **kwargs):
        resolve_layers(strategy.model, self.layers, f"{_KEY}.layers")
        known = (getattr(strategy, "scenario_info", None) or {}).get("num_known")
        if known and not isinstance(self.classes, str):
            self.constrained_class_ids(int(known), None)  # ids beyond the scenario's classes

    def constrained_class_ids(self, num_classes: int, counts: torch.Tensor | None) -> list[int]:
        """The classes whose irrelevant channels are suppressed."""
        if self.classes == "all":
            return list(range(num_classes))
        if self.classes == "tail":
            present = torch.as_tensor(counts if counts is not None else []).long()[:num_classes]
            seen = torch.nonzero(present > 0).squeeze(1)
            k = max(1, round(self.tail_fraction * len(seen))) if len(seen) else 0
            order = seen[present[seen].argsort(stable=True)]
            return sorted(order[:k].tolist())
        for c in self.classes:
            if c >= num_classes:
                raise ConfigError(
                    f"{_KEY}.classes: class {c} is out of range (the model has {num_classes})"
                )
        return sorted(set(self.classes))

    def _epoch_batches(self, strategy, dataset, experience: int):
        device, fmt = strategy.device, model_memory_format(strategy.model)

        def batches(epoch: int):
            seed = mix_seed(self.seed, experience, epoch, "model_doctor")
            if self.sampling == "class_balanced":
                targets = torch.as_tensor(list(dataset.targets)).long()
                probs = class_sampling_probabilities(torch.bincount(targets), 0.0)
                loader = weighted_loader(
                    dataset.train(),
                    sample_weights(targets, probs),
                    self.batch_size,
                    len(targets),
                    seed,
                )
            else:
                loader = iter_batches(
                    dataset,
                    self.batch_size,
                    train=True,
                    shuffle=True,
                    generator=seed,
                    device=device,
                    memory_format=fmt,
                )
                if loader is None:
                    gen = torch.Generator().manual_seed(seed)
                    loader = DataLoader(
                        dataset.train(), batch_size=self.batch_size, shuffle=True, generator=gen
                    )
            for batch in loader:
                yield batch[0].to(device), torch.as_tensor(batch[1]).long().to(device)

        return batches

    def after_training_exp(self, strategy, **kwargs):
        model = strategy.model
        layers = resolve_layers(model, self.layers, f"{_KEY}.layers")
        dataset = strategy.experience.dataset  # the training set of the experience
        num_classes = _num_classes(model, dataset, strategy.device)
        self.constrained_classes = self.constrained_class_ids(
            num_classes, discovery_state(strategy).class_counts
        )
        batches = training_batches(dataset, self.batch_size, strategy.device, model)
        found = sift_kernels(
            model,
            batches,
            layers,
            num_classes,
            scores=self.scores,
            combine=self.combine,
            confidence=self.confidence,
            max_per_class=self.max_images_per_class,
        )
        free = torch.ones(num_classes, dtype=torch.bool)
        free[self.constrained_classes] = False
        for mask in found.masks.values():
            mask[free] = True  # unconstrained classes: every channel counts as relevant
        self.masks = {name: mask.cpu() for name, mask in found.masks.items()}
        self.images_per_class = found.images_per_class
        self.last_losses = constrained_finetune(
            model,
            self._epoch_batches(strategy, dataset, int(strategy.clock.train_exp_counter)),
            strategy._criterion,
            layers,
            {n: m.to(strategy.device) for n, m in self.masks.items()},
            epochs=self.epochs,
            lr=self.lr,
            loss_scale=self.loss_scale,
            constraint=self.constraint,
            noise_std=self.noise_std,
            weight_decay=self.weight_decay,
        )

    def results_section(self) -> tuple[str, dict[str, Any]]:
        """``('model_doctor', facts)`` for ``results.json``: the masks (classes x channels, 0/1),
        sifting images per class, constrained classes and the fine-tuning losses."""
        return "model_doctor", {
            "masks": {name: mask.int().tolist() for name, mask in self.masks.items()},
            "images_per_class": self.images_per_class.tolist(),
            "constrained_classes": list(self.constrained_classes),
            "loss_scale": self.loss_scale,
            "finetune_losses": list(self.last_losses),
        }

    def state_dict(self) -> dict[str, Any]:
        """The masks and what sifting used (the fine-tuned weights are the model's)."""
        return {
            "masks": dict(self.masks),
            "images_per_class": self.images_per_class,
            "constrained_classes": torch.tensor(self.constrained_classes, dtype=torch.long),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = {k: v.bool() for k, v in (state.get("masks") or {}).items()}
        self.images_per_class = state.get("images_per_class", torch.zeros(0, dtype=torch.long))
        self.constrained_classes = state.get("constrained_classes", torch.zeros(0)).tolist()
