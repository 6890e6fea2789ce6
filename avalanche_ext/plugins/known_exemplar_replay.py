"""Known-class exemplar replay for a discovery update: a few real, labeled images per known class
train the joint head next to the unlabeled discovery images, so the old-vs-new decision is learned
on real known images rather than only on replayed prototype features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.data.augmented_rows import AugmentedRows
from avalanche_ext.data.batched import mix_seed
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.plugin_helpers import is_discovery_experience
from avalanche_ext.registry import PLUGINS

__all__ = ["KnownExemplarReplayPlugin", "class_balanced_choice"]


def class_balanced_choice(
    targets: torch.Tensor, per_class: int, generator: torch.Generator
) -> torch.Tensor:
    """Sorted row indices of at most ``per_class`` seeded random rows of every label >= 0.

    Args:
        targets: ``[N]`` labels (negative = unlabeled, never chosen).
        per_class: rows kept per class (a class with fewer keeps all of its rows).
        generator: the draw's random generator.
    """
    chosen = []
    for c in torch.unique(targets[targets >= 0]).tolist():
        rows = torch.nonzero(targets == c).flatten()
        order = torch.randperm(len(rows), generator=generator)[:per_class]
        chosen.append(rows[order])
    if not chosen:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(chosen).sort().values


@PLUGINS.register_module()
class KnownExemplarReplayPlugin(SupervisedPlugin):
    """Replays ``per_class`` labeled images of every known class during a discovery update.

    The memory is a seeded class-balanced draw of ``per_class`` images per known class from every
    labeled experience before the discovery one, pooled (a class seen in several experiences
    still keeps ``per_class`` images in all, drawn from all of them), minus each experience's
    held-out calibration rows. It is the same whether it is drawn when the labeled experiences end
    or, as here, when the update starts: the draw depends only on the seed and the labeled data,
    so a resumed run replays the same images without storing them. Every update minibatch adds
    ``weight`` times the cross-entropy over ALL classes (old and new rows) of ``batch_size``
    memory images, each augmented by its own experience's training transforms: the new rows learn
    not to fire on real known images. Labeled experiences are untouched.

    Decision: this stores images of the known classes (``per_class`` x known classes), as
    class-incremental methods with a memory do (iCaRL); FRoST's protocol is exemplar-free, so a
    run with this plugin is not comparable to its table, and the report lists the plugin.

    Args:
        per_class (int): images kept per known class.
        batch_size (int): memory images per update minibatch.
        weight (float): weight of their cross-entropy in the update's loss.
        seed (int | None): seed of the memory draw and of the batches (None: the run's seed).
    """

    def __init__(
        self,
        per_class: int = 20,
        batch_size: int = 64,
        weight: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if per_class <= 0 or batch_size <= 0 or weight < 0:
            raise ValueError("per_class and batch_size must be > 0 and weight >= 0")
        self.per_class = int(per_class)
        self.batch_size = int(batch_size)
        self.weight = float(weight)
        self.seed = 0 if seed is None else int(seed)
        self.last_loss: float | None = None
        self._memory: dict[str, Any] | None = None
        self._summary: dict[str, Any] = {}

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Draws the memory from the labeled experience before a triggered discovery update."""
        self._memory = None
        pool = discovery_state(strategy).pool
        if not is_discovery_experience(strategy.experience) or pool is None or not pool.triggered:
            return
        stream = getattr(strategy.experience, "_origin_stream", None)
        if stream is None:
            return
        current = int(strategy.experience.current_experience)
        labeled = [stream[k] for k in range(current) if not is_discovery_experience(stream[k])]
        if labeled:
            self._memory = self._draw(strategy, labeled, current)
            targets = self._memory["targets"]
            self._summary = {
                "images": len(targets),
                "classes": len(torch.unique(targets)),
                "per_class": self.per_class,
                "exemplar_free": False,
            }

    @staticmethod
    def _trained_on(strategy: Any, targets: torch.Tensor, exp_index: int) -> torch.Tensor:
        """``targets`` with the rows held out for calibration (never trained on) set to -1: the
        memory must not hold the images that judge the operating point. Any plugin with a
        ``held_out_split(n, experience_index)`` method (the gate) is asked; its rows index the
        experience's dataset as the stream gives it (no plugin in front of the gate may reorder
        or resample that dataset)."""
        targets = targets.clone()
        for plugin in strategy.plugins:
            split = getattr(plugin, "held_out_split", None)
            held = split(len(targets), exp_index) if callable(split) else None
            if held is not None:
                targets[held[0]] = -1
        return targets

    def _draw(self, strategy: Any, experiences: list, current: int) -> dict[str, Any]:
        """The memory: rows into the concatenation of the labeled experiences' training datasets,
        their labels, one :class:`AugmentedRows` per experience and where each one's rows start."""
        seed = mix_seed(self.seed, current, "known exemplars")
        generator = torch.Generator().manual_seed(seed)
        device_generator = torch.Generator(device=strategy.device).manual_seed(seed)
        sources, targets = [], []
        for experience in experiences:
            views = AugmentedRows(
                experience.dataset.train(),
                strategy.model,
                strategy.device,
                seed,
                generator=device_generator,
            )
            index = int(experience.current_experience)
            sources.append(views)
            targets.append(self._trained_on(strategy, views.targets(), index))
        starts = torch.cumsum(torch.tensor([0, *[len(t) for t in targets]]), 0)
        all_targets = torch.cat(targets)
        rows = class_balanced_choice(all_targets, self.per_class, generator)
        return {
            "rows": rows,
            "targets": all_targets[rows],
            "sources": sources,
            "starts": starts,
            "generator": generator,
        }

    def _batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self._memory
        n = len(memory["targets"])
        pick = torch.randint(n, (min(self.batch_size, n),), generator=memory["generator"])
        starts = memory["starts"]
        source = torch.bucketize(memory["rows"][pick], starts[1:], right=True)
        order = torch.argsort(source, stable=True)  # grouped by experience: one gather each
        pick, source = pick[order], source[order]
        rows = memory["rows"][pick]
        images = [
            memory["sources"][k](rows[source == k] - starts[k], device)
            for k in torch.unique(source).tolist()
        ]
        return torch.cat(images), memory["targets"][pick].to(device)

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds the memory batch's cross-entropy over every class to the update's loss."""
        self.last_loss = None
        if self._memory is None or self.weight == 0 or len(self._memory["targets"]) == 0:
            return
        model = strategy.model
        kept = getattr(model, "last_features", None)
        x, y = self._batch(strategy.device)
        loss = F.cross_entropy(model(x), y)
        model.last_features = kept  # other plugins read the discovery batch's features
        strategy.loss = strategy.loss + self.weight * loss
        self.last_loss = float(loss.detach())

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._memory = None

    def results_section(self) -> tuple[str, dict[str, Any]]:
        """``results.json["known_exemplars"]``: how many labeled known images the update replayed
        (a run with them is not exemplar-free)."""
        return "known_exemplars", dict(self._summary)
