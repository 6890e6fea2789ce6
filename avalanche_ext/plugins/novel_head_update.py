"""A representation-learning discovery update: the backbone's last stage learns the novel classes
from two augmented views per image, a self-supervised objective on a novel head and pseudo-labels
refreshed at every step (in the spirit of UNO and FRoST, sized for an update of a few epochs).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from avalanche.training.plugins import SupervisedPlugin
from torch import nn

from avalanche_ext.data.augmented_rows import AugmentedRows
from avalanche_ext.data.batched import mix_seed
from avalanche_ext.losses.discovery import DISCOVERY_OBJECTIVES, balanced_targets
from avalanche_ext.ncd import lookup_table
from avalanche_ext.ncd_state import discovery_state
from avalanche_ext.plugin_helpers import is_discovery_experience
from avalanche_ext.registry import PLUGINS

__all__ = ["NovelHeadUpdatePlugin", "cluster_prototypes", "freeze_except", "last_stage"]


def cluster_prototypes(features: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``[k, D]`` unit-norm mean of the L2-normalised features of each cluster (an empty cluster
    takes the mean of all), the novel head's starting prototypes: its first targets are then the
    k-means clusters, a useful signal from the first step.

    Args:
        features: ``[N, D]`` features (centred by the caller).
        labels: ``[N]`` cluster ids in ``0 .. k-1`` (negative: ignored).
        k: number of clusters.
    """
    x = F.normalize(features.float(), dim=1)
    keep = labels >= 0
    sums = torch.zeros(k, x.shape[1]).index_add_(0, labels[keep].long(), x[keep])
    counts = torch.bincount(labels[keep].long(), minlength=k)[:k]
    means = torch.where(counts[:, None] > 0, sums, x.mean(0, keepdim=True))
    return F.normalize(means, dim=1)


def last_stage(model: nn.Module) -> str:
    """Name prefix of the backbone's last residual stage (``backbone.layer3`` of a CIFAR ResNet,
    ``backbone.layer4`` of a ResNet-18), found from the parameter names."""
    stages = {
        int(match.group(1))
        for name, _ in model.named_parameters()
        if (match := re.match(r"backbone\.layer(\d+)\.", name))
    }
    if not stages:
        raise ValueError("trainable: 'last_stage' needs a backbone with layer1, layer2, ... stages")
    return f"backbone.layer{max(stages)}."


def freeze_except(model: nn.Module, trainable: tuple[str, ...]) -> list[nn.Parameter]:
    """Sets ``requires_grad=False`` on every parameter whose name starts with none of
    ``trainable`` (and that trains now); returns them, to unfreeze later. ``'last_stage'`` stands
    for :func:`last_stage`."""
    trainable = tuple(last_stage(model) if t == "last_stage" else t for t in trainable)
    frozen = []
    for name, param in model.named_parameters():
        if param.requires_grad and not name.startswith(trainable):
            param.requires_grad_(False)
            frozen.append(param)
    return frozen


@PLUGINS.register_module()
class NovelHeadUpdatePlugin(SupervisedPlugin, supports_distributed=False):
    """Learns the representation of the novel classes during a triggered discovery update.

    Put it after ``PseudoLabelClusteringPlugin`` (which grows the joint head to ``C_old + k`` and
    labels the pooled samples) and beside ``DualTeacherDistillationPlugin`` (which holds the old
    classes: old-logit distillation, feature distillation to the frozen old model, prototype replay,
    and calibrates the old-vs-new decision afterwards). On every update minibatch of pooled images:

    1. A second augmented view of each image is drawn (the experience's own train pipeline, batched,
       seeded by the run seed).
    2. A novel head (``k`` unit-norm prototypes, cosine logits over ``temperature``, started at the
       k-means clusters of the pooled features) scores both views; ``objective`` (registered in
       ``avalanche_ext.losses.discovery.DISCOVERY_OBJECTIVES``: ``'swapped'`` = UNO's swapped
       prediction on Sinkhorn-balanced targets, ``'pairwise'`` = rank-statistics pair labels,
       ``'swapped+pairwise'``) trains it and the backbone, weighted by ``discovery_weight``.
    3. The joint head's pseudo-labels are refreshed online: each view's label is
       ``C_old + argmax`` of the novel head on the OTHER view (replacing the fixed k-means labels;
       not the balanced targets, since one minibatch's classes need not be balanced), and the joint head learns the new rows from both views (``joint_weight`` on the
       second view; the strategy's criterion gives the first).

    Only parameters whose names start with one of ``trainable`` train (default: the backbone's last
    stage and the classifier), so a few epochs move what matters and the early layers, shared by the
    old classes, stay put. The frozen parameters are released after the experience.

    Args:
        objective (str): a key of ``DISCOVERY_OBJECTIVES``.
        discovery_weight (float): weight of the self-supervised objective.
        joint_weight (float): weight of the joint head's cross-entropy on the second view.
        temperature (float): temperature of the novel head's cosine logits.
        sinkhorn_epsilon (float): Sinkhorn regularisation of the targets.
        queue_size (int): this many recent samples' features are balanced with each minibatch
            (SwAV's queue; a minibatch alone is rarely class-balanced).
        refresh_labels (bool): replace the clustering's fixed labels by the novel head's online
            ones (False: the k-means labels stay, only the representation learns).
        trainable (list[str]): parameter-name prefixes that train during the update;
            ``'last_stage'`` = the backbone's last residual stage.
        head_lr (float): learning rate of the novel head's own SGD optimiser.
        seed (int | None): seed of the second view's augmentation (None: the run's seed).
    """

    def __init__(
        self,
        objective: str = "swapped",
        discovery_weight: float = 0.5,
        joint_weight: float = 1.0,
        temperature: float = 0.1,
        sinkhorn_epsilon: float = 0.05,
        queue_size: int = 2048,
        refresh_labels: bool = True,
        trainable: list[str] | tuple[str, ...] = ("last_stage", "head"),
        head_lr: float = 0.05,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if objective not in DISCOVERY_OBJECTIVES:
            raise ValueError(
                f"objective must be one of {sorted(DISCOVERY_OBJECTIVES)}, got {objective!r}"
            )
        if min(discovery_weight, joint_weight, head_lr) < 0 or temperature <= 0:
            raise ValueError("weights and head_lr must be >= 0 and temperature > 0")
        if sinkhorn_epsilon <= 0:
            raise ValueError(f"sinkhorn_epsilon must be > 0, got {sinkhorn_epsilon}")
        self.objective = objective
        self.discovery_weight = float(discovery_weight)
        self.joint_weight = float(joint_weight)
        self.temperature = float(temperature)
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.queue_size = int(queue_size)
        self._queue: torch.Tensor | None = None
        self._centre: torch.Tensor | None = None
        self.centre_momentum = 0.9
        self.refresh_labels = bool(refresh_labels)
        self.trainable = tuple(str(t) for t in trainable)
        self.head_lr = float(head_lr)
        self.seed = 0 if seed is None else int(seed)
        self.prototypes: nn.Parameter | None = None
        self.last_losses: dict[str, float] = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._frozen: list[nn.Parameter] = []
        self._source: dict[str, Any] | None = None
        self._pending: dict[str, torch.Tensor] | None = None
        self._num_old = 0

    # ---------------------------------------------------------------- set-up
    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Builds the novel head and the second-view source; freezes the early layers."""
        self._source = None
        state = discovery_state(strategy)
        pool = state.pool
        if not is_discovery_experience(strategy.experience) or pool is None or not pool.triggered:
            return
        if state.pseudo_labels is None or pool.features is None:
            raise RuntimeError(
                "NovelHeadUpdatePlugin needs the clustering plugin's pseudo-labels and the pool's "
                "features: put PseudoLabelClusteringPlugin before it"
            )
        self._num_old = int(state.num_known_classes)
        k = int(strategy.model.num_classes) - self._num_old
        labels = state.pseudo_labels[pool.indices] - self._num_old
        # Post-ReLU features share a large common component (cosines near 1 between classes):
        # the novel head works on features centred by a running mean, as k-means works on PCA-
        # centred ones.
        self._centre = pool.features.float().mean(0).to(strategy.device)
        centred = pool.features.float() - self._centre.cpu()
        self.prototypes = nn.Parameter(cluster_prototypes(centred, labels, k))
        self.prototypes.data = self.prototypes.data.to(strategy.device)
        self._optimizer = torch.optim.SGD([self.prototypes], lr=self.head_lr, momentum=0.9)
        self._queue = None
        self._source = self._view_source(strategy)
        self._frozen = freeze_except(strategy.model, self.trainable)
        if not any(p.requires_grad for p in strategy.model.parameters()):
            raise ValueError(f"trainable: no parameter name starts with any of {self.trainable}")

    def _view_source(self, strategy: Any) -> dict[str, Any]:
        """The second view's source: the experience's rows, and a table from a minibatch's sample
        index to its row (None: the sample index is the row)."""
        seed = mix_seed(self.seed, int(strategy.clock.train_exp_counter), "second view")
        views = AugmentedRows(
            strategy.experience.dataset.train(), strategy.model, strategy.device, seed
        )
        view, rows = views.view, None
        if views.batched and view.sample_indices is not None:
            size = int(view.sample_indices.max()) + 1
            rows = lookup_table(view.sample_indices, torch.arange(len(view.sample_indices)), size)
        return {"views": views, "rows": rows}

    def _second_view(self, indices: torch.Tensor, device: torch.device) -> torch.Tensor:
        source = self._source
        rows = indices.cpu().long()
        if source["rows"] is not None:
            rows = source["rows"][rows]
        return source["views"](rows, device)

    # ---------------------------------------------------------------- per minibatch
    def _centred(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.float() - self._centre, dim=1)

    def _similarities(self, features: torch.Tensor) -> torch.Tensor:
        return self._centred(features) @ F.normalize(self.prototypes, dim=1).t()

    def _targets(
        self, sim_1: torch.Tensor, sim_2: torch.Tensor, features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Balanced targets of both views, balanced with the queued samples scored against the
        CURRENT prototypes (stale scores would let the queue absorb the balance); the queue then
        takes this batch's view-1 features."""
        queue = None
        with torch.no_grad():
            if self._queue is not None:
                queue = self._queue @ F.normalize(self.prototypes, dim=1).t()
        q1 = balanced_targets(sim_1, queue, self.sinkhorn_epsilon)
        q2 = balanced_targets(sim_2, queue, self.sinkhorn_epsilon)
        if self.queue_size > 0:
            rows = self._centred(features.detach())
            stacked = rows if self._queue is None else torch.cat([rows, self._queue])
            self._queue = stacked[: self.queue_size]
        return q1, q2

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        """Second view, novel-head logits of both, and the refreshed labels of view 1."""
        self._pending = None
        mbatch = strategy.mbatch
        if self._source is None or mbatch is None or len(mbatch) != 4 or len(mbatch[0]) == 0:
            return
        model = strategy.model
        features_1 = model.last_features
        x2 = self._second_view(mbatch[2], strategy.device)
        joint_2 = model(x2)
        features_2 = model.last_features
        model.last_features = features_1  # feature distillation reads view 1's features
        with torch.no_grad():
            batch_mean = torch.cat([features_1, features_2]).detach().float().mean(0)
            self._centre.mul_(self.centre_momentum).add_(batch_mean, alpha=1 - self.centre_momentum)
        sim_1, sim_2 = self._similarities(features_1), self._similarities(features_2)
        novel_1, novel_2 = sim_1 / self.temperature, sim_2 / self.temperature
        targets_1, targets_2 = self._targets(sim_1, sim_2, features_1)
        if self.refresh_labels:  # unbalanced argmax: a batch's classes need not be balanced
            strategy.mbatch[1] = (novel_2.detach().argmax(1) + self._num_old).to(mbatch[1].device)
            labels_2 = novel_1.detach().argmax(1) + self._num_old
        else:
            labels_2 = mbatch[1]
        self._pending = {
            "novel_1": novel_1,
            "novel_2": novel_2,
            "targets_1": targets_1,
            "targets_2": targets_2,
            "features_1": features_1,
            "features_2": features_2,
            "joint_2": joint_2,
            "labels_2": labels_2.to(joint_2.device),
        }

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Adds the discovery objective and the joint head's second-view loss."""
        self.last_losses = {}
        p = self._pending
        if p is None:
            return
        objective = DISCOVERY_OBJECTIVES[self.objective]
        discovery = objective(
            p["novel_1"],
            p["novel_2"],
            p["targets_1"],
            p["targets_2"],
            p["features_1"],
            p["features_2"],
        )
        joint = F.cross_entropy(p["joint_2"], p["labels_2"])
        strategy.loss = (
            strategy.loss + self.discovery_weight * discovery + self.joint_weight * joint
        )
        self.last_losses = {
            "discovery": float(discovery.detach()),
            "joint_2": float(joint.detach()),
        }
        self._pending = None

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        if self._optimizer is not None and self._source is not None:
            self._optimizer.step()
            self._optimizer.zero_grad(set_to_none=True)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Releases the frozen layers and drops the novel head (it is not part of the model)."""
        for param in self._frozen:
            param.requires_grad_(True)
        self._frozen, self._source, self._optimizer, self.prototypes = [], None, None, None
        self._queue = None
        self._pending = None
