"""What a registered scenario returns, and the helpers scenarios share to build Avalanche datasets.

See docs/contracts.md: datasets yield ``(x, y, task_label)``; a discovery experience with hidden
labels yields ``(x, UNLABELED, sample_index, task_label)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_classification_dataset,
)
from torch.utils.data import Dataset

from avalanche_ext.errors import ConfigError

__all__ = [
    "UNLABELED",
    "BuiltScenario",
    "IndexedUnlabeledDataset",
    "TensorImageDataset",
    "make_benchmark",
    "known_view",
    "make_dataset",
    "select_eval_streams",
    "stream_summary",
]

UNLABELED = -1
"""The target every sample of a hidden-label (discovery) experience carries during training."""


@dataclass
class BuiltScenario:
    """An Avalanche benchmark plus the facts the runner and the report need about it.

    Args:
        benchmark: the Avalanche benchmark (``train_stream``, ``test_stream``).
        num_classes: classifier size needed by the end of the stream.
        class_names: class names, index = class id (after any remapping).
        eval_streams: extra streams evaluated after every experience, by name.
        info: JSON-able facts copied to ``results.json["scenario"]``.
        hidden_labels: train-experience index -> true labels; for evaluation code only.
        initial_num_classes: head size at the start (None: ``num_classes``).
    """

    benchmark: CLScenario
    num_classes: int
    class_names: list[str]
    eval_streams: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    hidden_labels: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    initial_num_classes: int | None = None


class TensorImageDataset(Dataset):
    """Images kept in memory as one uint8 tensor ``[N, C, H, W]`` (CIFAR is small: no decoding).

    Args:
        images: uint8 tensor ``[N, C, H, W]``.
        targets: int64 tensor ``[N]``.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], int(self.targets[index])

    def batch_tensors(self):
        """The whole dataset as tensors for the batched data path (``avalanche_ext.data``)."""
        from avalanche_ext.data.tensor_view import LeafTensors  # noqa: PLC0415

        if not torch.is_tensor(self.images):
            return None
        return LeafTensors(images=self.images, targets=self.targets)


class IndexedUnlabeledDataset(Dataset):
    """Inputs whose labels are withheld: yields ``(x, UNLABELED, index)``.

    It is built from the inputs alone (e.g. the image tensor), so no attribute chain from a strategy
    or plugin leads to the true labels: ``targets`` is all ``UNLABELED``, ``mb_y`` too.

    Args:
        inputs: an indexable of inputs (``inputs[i]`` is the sample ``x``), e.g. a uint8 image tensor.
    """

    def __init__(self, inputs):
        self._inputs = inputs
        self.targets = torch.full((len(inputs),), UNLABELED, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self._inputs[index], UNLABELED, index

    def batch_tensors(self):
        """The inputs alone (``targets=None``: items are ``(x, UNLABELED, index)``), for the batched
        data path; nothing here holds a true label."""
        from avalanche_ext.data.tensor_view import LeafTensors  # noqa: PLC0415

        if not torch.is_tensor(self._inputs):
            return None
        return LeafTensors(images=self._inputs, targets=None)


def make_dataset(
    dataset: Dataset,
    train_transform: Callable | None = None,
    eval_transform: Callable | None = None,
    task_label: int = 0,
    targets: Sequence[int] | torch.Tensor | None = None,
):
    """Wraps a ``(x, y)`` dataset into an Avalanche classification dataset with train/eval transforms.

    Args:
        dataset: yields ``(x, y)`` (or ``(x, y, index)`` for hidden-label data); has ``targets``.
        train_transform: applied to ``x`` in the ``train`` group.
        eval_transform: applied to ``x`` in the ``eval`` group.
        task_label: task label of every sample.
        targets: the targets, when ``dataset`` has no ``targets`` attribute.
    """
    if targets is None:
        targets = dataset.targets
    targets = torch.as_tensor(targets).tolist()
    return _make_taskaware_classification_dataset(
        dataset,
        transform_groups={"train": (train_transform, None), "eval": (eval_transform, None)},
        initial_transform_group="train",
        task_labels=task_label,
        targets=targets,
    )


def make_benchmark(train_datasets: list, test_datasets: list, **other_streams: list) -> CLScenario:
    """Builds an Avalanche benchmark (with the classes timeline) from per-experience datasets.

    Evaluation experiences also get the ``benchmark`` back-reference that avalanche 0.6's
    ``StreamConfusionMatrix(save_image=True)`` reads but ``benchmark_from_datasets`` never sets.
    Training experiences do not: from a training experience the benchmark would lead to the
    labeled test streams of classes still to be discovered.
    """
    bench = with_classes_timeline(
        benchmark_from_datasets(train=train_datasets, test=test_datasets, **other_streams)
    )
    for name, stream in bench.streams.items():
        if name == "train":
            continue
        for exp in stream:
            exp.benchmark = bench
    return bench


def stream_summary(stream) -> list[dict[str, Any]]:
    """``[{"index", "size", "classes"}]`` for every experience of an Avalanche stream."""
    out = []
    for exp in stream:
        classes = getattr(exp, "classes_in_this_experience", None)
        if classes is None:
            classes = exp.dataset.targets.uniques
        out.append(
            {
                "index": int(exp.current_experience),
                "size": len(exp.dataset),
                "classes": sorted(int(c) for c in classes),
            }
        )
    return out


def select_eval_streams(scenario: BuiltScenario, names: list | None) -> dict[str, Any]:
    """The scenario's extra evaluation streams that ``eval_streams`` (a list of names; None: all)
    asks for.

    Raises:
        ConfigError: an unknown name (the message lists the scenario's streams).
    """
    if names is None:
        return dict(scenario.eval_streams)
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"eval_streams: expected a list of stream names, got {names!r}")
    unknown = [n for n in names if n not in scenario.eval_streams]
    if unknown:
        raise ConfigError(
            f"eval_streams: unknown stream {unknown[0]!r}; this scenario has "
            f"{sorted(scenario.eval_streams) or 'none'}"
        )
    return {n: scenario.eval_streams[n] for n in names}


def known_view(scenario: BuiltScenario) -> dict[str, Any]:
    """The scenario facts training code may see: the known classes and their counts only."""
    known = scenario.initial_num_classes or scenario.num_classes
    counts = scenario.info.get("train_class_counts")
    return {
        "num_known": known,
        "known_classes": list(range(known)),
        "train_class_counts": None if counts is None else list(counts[:known]),
    }
