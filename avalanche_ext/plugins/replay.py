"""A replay buffer that can be checkpointed: indices into the experience datasets, not datasets.

Avalanche's ``ReplayPlugin`` keeps its memory as ``AvalancheDataset`` subsets, which have no
weights-only checkpoint form, so a run using it could not be resumed. This ``ReplayPlugin`` (same
config keys; it shadows Avalanche's for every config, since our registry is searched first) keeps,
per buffer group, three plain tensors: the experience index, the sample index inside that
experience's dataset, and the reservoir weight of each stored sample. The replayed dataset is
rebuilt from the stream's experiences whenever it is needed (after a resume, from
``experience.origin_stream``). Avalanche's own replay dataloader (``ReplayDataLoader``) and its
reservoir-sampling rule are used unchanged.

Decisions:

* ``storage_policy`` defaults to class-balanced (``ClassBalancedBuffer``: memory split equally over
  the classes seen so far, reservoir sampling inside each class), not Avalanche's
  experience-balanced default: in class-incremental learning an experience-balanced memory gives the
  classes of large early experiences few exemplars each (the demo's comment, "20 per class",
  assumes this split). ``ExperienceBalancedBuffer`` is available by name.
* Samples with a hidden label (``-1``, discovery experiences) are never stored: their labels are
  unknown, and replaying them would feed ``-1`` targets to the loss.
* Groups are visited in sorted order when the memory is split (Avalanche iterates a ``set``), so a
  resumed run assigns the same sizes as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.benchmarks.utils.utils import concat_datasets
from avalanche.training.plugins import ReplayPlugin as _AvalancheReplayPlugin
from avalanche.training.storage_policy import ExemplarsBuffer

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import PLUGINS

__all__ = ["IndexedBuffer", "ReplayPlugin", "group_lengths", "reservoir_merge"]

POLICIES = ("ClassBalancedBuffer", "ExperienceBalancedBuffer")


def group_lengths(max_size: int, num_groups: int) -> list[int]:
    """Avalanche's adaptive split: ``max_size // n`` each, the remainder to the first groups."""
    if num_groups <= 0:
        return []
    lengths = [max_size // num_groups] * num_groups
    for i in range(max_size - sum(lengths)):
        lengths[i] += 1
    return lengths


def reservoir_merge(
    old: dict[str, torch.Tensor], exp_index: int, indices: torch.Tensor, max_size: int
) -> dict[str, torch.Tensor]:
    """Reservoir sampling as Avalanche's ``ReservoirSamplingBuffer.update_from_dataset``: one
    ``torch.rand`` weight per new sample, keep the ``max_size`` highest weights of new + old.

    Args:
        old: ``{"exp", "idx", "w"}`` tensors of the group (weights sorted, descending).
        exp_index: the experience the new samples come from.
        indices: the new samples' indices in that experience's dataset.
        max_size: the group's capacity.
    """
    new_w = torch.rand(len(indices))
    w = torch.cat([new_w, old["w"]])
    exp = torch.cat([torch.full((len(indices),), exp_index, dtype=torch.long), old["exp"]])
    idx = torch.cat([indices.long(), old["idx"]])
    w, order = w.sort(descending=True)
    keep = order[:max_size]
    return {"exp": exp[keep], "idx": idx[keep], "w": w[:max_size]}


def _empty() -> dict[str, torch.Tensor]:
    return {
        "exp": torch.zeros(0, dtype=torch.long),
        "idx": torch.zeros(0, dtype=torch.long),
        "w": torch.zeros(0),
    }


def _resize(group: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    return {k: v[:size] for k, v in group.items()}


class IndexedBuffer(ExemplarsBuffer):
    """Class- or experience-balanced reservoir memory stored as indices (an Avalanche
    ``ExemplarsBuffer``, so Avalanche code reading ``.buffer`` works unchanged).

    Args:
        max_size: total capacity.
        policy: ``ClassBalancedBuffer`` or ``ExperienceBalancedBuffer``.
    """

    def __init__(self, max_size: int, policy: str = "ClassBalancedBuffer"):
        super().__init__(max_size)
        self.policy = policy
        self.groups: dict[int, dict[str, torch.Tensor]] = {}
        self.num_experiences = 0
        self._datasets: dict[int, Any] = {}
        self._stream = None

    # ---------------------------------------------------------------- update
    def post_adapt(self, agent_state, exp) -> None:
        """Adds the samples of the experience just trained on."""
        k = int(exp.current_experience)
        self._datasets[k] = exp.dataset
        self._stream = getattr(exp, "_origin_stream", None) or self._stream
        targets = torch.as_tensor([int(t) for t in exp.dataset.targets], dtype=torch.long)
        self.num_experiences += 1
        if self.policy == "ExperienceBalancedBuffer":
            labeled = torch.nonzero(targets >= 0).flatten()
            lengths = group_lengths(self.max_size, self.num_experiences)
            self.groups[self.num_experiences - 1] = reservoir_merge(
                _empty(), k, labeled, lengths[-1]
            )
            self._resize_all(lengths)
            return
        new_classes = list(dict.fromkeys(int(t) for t in targets.tolist() if t >= 0))
        seen = sorted(set(self.groups) | set(new_classes))
        sizes = dict(zip(seen, group_lengths(self.max_size, len(seen))))
        for c in new_classes:
            where = torch.nonzero(targets == c).flatten()
            self.groups[c] = _resize(
                reservoir_merge(self.groups.get(c, _empty()), k, where, sizes[c]), sizes[c]
            )
        self._resize_all([sizes[c] for c in sorted(self.groups)])

    def _resize_all(self, lengths: list[int]) -> None:
        for key, size in zip(sorted(self.groups), lengths):
            self.groups[key] = _resize(self.groups[key], size)

    def resize(self, strategy, new_size: int) -> None:
        self.max_size = new_size
        self._resize_all(group_lengths(new_size, len(self.groups)))

    # ---------------------------------------------------------------- dataset
    def attach(self, experience) -> None:
        """Remembers the stream of ``experience`` (the datasets of a resumed buffer come from it)."""
        self._stream = getattr(experience, "_origin_stream", None) or self._stream

    def _dataset(self, k: int):
        if k not in self._datasets:
            if self._stream is None:
                raise RuntimeError("replay buffer: the experience datasets are unknown")
            self._datasets[k] = self._stream[k].dataset
        return self._datasets[k]

    @property
    def buffer(self):
        parts = []
        for key in sorted(self.groups):
            group = self.groups[key]
            for k in sorted(set(group["exp"].tolist())):
                idx = group["idx"][group["exp"] == k].tolist()
                parts.append(self._dataset(k).subset(idx))
        return concat_datasets(parts)

    @buffer.setter
    def buffer(self, value) -> None:  # ExemplarsBuffer.__init__ assigns an empty buffer
        pass

    def __len__(self) -> int:
        return sum(len(g["idx"]) for g in self.groups.values())

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "max_size": self.max_size,
            "num_experiences": self.num_experiences,
            "groups": {
                str(k): {n: t.clone() for n, t in g.items()} for k, g in self.groups.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["policy"] != self.policy or int(state["max_size"]) != self.max_size:
            raise ConfigError(
                f"--resume: the checkpoint's replay buffer is a {state['policy']} of "
                f"{state['max_size']}, the config asks for a {self.policy} of {self.max_size}"
            )
        self.num_experiences = int(state["num_experiences"])
        self.groups = {int(k): dict(g) for k, g in state["groups"].items()}
        self._datasets = {}


def _policy_name(storage_policy: Any) -> str:
    if storage_policy is None:
        return "ClassBalancedBuffer"
    name = storage_policy.get("type") if isinstance(storage_policy, dict) else storage_policy
    if isinstance(name, str) and name in POLICIES:
        extra = set(storage_policy) - {"type", "max_size", "adaptive_size"}
        if isinstance(storage_policy, dict) and (
            extra or storage_policy.get("adaptive_size", True) is not True
        ):
            raise ConfigError(
                "cl_strategy.plugins.storage_policy: only type (and adaptive_size=True) are "
                f"supported, got {dict(storage_policy)}"
            )
        return name
    raise ConfigError(
        f"cl_strategy.plugins.storage_policy: {name!r} cannot be checkpointed; use one of "
        f"{list(POLICIES)}"
    )


@PLUGINS.register_module()
class ReplayPlugin(_AvalancheReplayPlugin):
    """Avalanche's experience replay with a memory that survives ``--resume``.

    Args:
        mem_size: total number of stored samples.
        batch_size: size of the data part of a minibatch (None: ``train_mb_size``).
        batch_size_mem: size of the memory part of a minibatch (None: ``train_mb_size``).
        task_balanced_dataloader: balance the memory batches over task labels.
        storage_policy: ``'ClassBalancedBuffer'`` (default) or ``'ExperienceBalancedBuffer'``
            (a name, or a dict with that ``type``).
    """

    def __init__(
        self,
        mem_size: int = 200,
        batch_size: int | None = None,
        batch_size_mem: int | None = None,
        task_balanced_dataloader: bool = False,
        storage_policy: str | dict | None = None,
    ):
        if isinstance(mem_size, bool) or not isinstance(mem_size, int) or mem_size <= 0:
            raise ConfigError(f"ReplayPlugin.mem_size: expected a positive int, got {mem_size!r}")
        policy = IndexedBuffer(mem_size, _policy_name(storage_policy))
        super().__init__(
            mem_size=mem_size,
            batch_size=batch_size,
            batch_size_mem=batch_size_mem,
            task_balanced_dataloader=task_balanced_dataloader,
            storage_policy=policy,
        )

    def before_training_exp(self, strategy, num_workers: int = 0, shuffle: bool = True, **kwargs):
        self.storage_policy.attach(strategy.experience)
        if len(self.storage_policy) == 0:
            return
        super().before_training_exp(strategy, num_workers=num_workers, shuffle=shuffle, **kwargs)

    def after_training_exp(self, strategy, **kwargs):
        self.storage_policy.post_adapt(strategy, strategy.experience)

    def state_dict(self) -> dict[str, Any]:
        """The memory as plain tensors (experience index, sample index, reservoir weight)."""
        return self.storage_policy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.storage_policy.load_state_dict(state)
