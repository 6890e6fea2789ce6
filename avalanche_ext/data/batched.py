"""The batched data path: minibatches cut from in-memory uint8 tensors and augmented once per batch.

* :func:`iter_batches` / :class:`BatchIterator`: seeded, reproducible minibatches of an Avalanche
  dataset with the tuple shapes Avalanche's loaders yield (``[x, y, t]``, or ``[x, y, index, t]``
  for hidden-label experiences), already on the model's device.
* :class:`BatchedDataPlugin`: replaces ``strategy.dataloader`` (train, including Avalanche's replay
  loader, and eval) with a :class:`BatchIterator` whenever every dataset has a tensor view and its
  pipeline compiles; otherwise the per-sample loader stays, and the choice is logged once.
* :func:`eval_batches` / :func:`extract`: the same path for the plugins' own scoring and feature
  passes (the gate, clustering, teachers).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from avalanche.training.plugins import SupervisedPlugin
from torch.utils.data import DataLoader, RandomSampler

from avalanche_ext.data.batched_transforms import (
    BatchedPipeline,
    compile_pipeline,
    explain_pipeline,
)
from avalanche_ext.data.tensor_view import TensorView, tensor_view, why_no_view

__all__ = [
    "BatchIterator",
    "BatchedDataPlugin",
    "batched_iterator_for",
    "eval_batches",
    "extract",
    "iter_batches",
    "model_memory_format",
    "mix_seed",
]

_log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _log_once(message: str, say: Callable[[str], None] | None = None) -> None:
    if message in _LOGGED:
        return
    _LOGGED.add(message)
    (say or _log.info)(message)


def mix_seed(*parts: int | str) -> int:
    """A 62-bit seed from ints and strings (run seed, experience, epoch, purpose...)."""
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) % 2**32 for p in parts]
    return int(np.random.default_rng(words).integers(2**62))


def model_memory_format(model: torch.nn.Module) -> torch.memory_format:
    """``channels_last`` when the model's first 4-D weight is stored that way, else NCHW."""
    for p in model.parameters():
        if p.dim() == 4:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format


def _distributed() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class _Part:
    """One dataset of a batch iterator and the number of its samples in each minibatch."""

    view: TensorView
    pipeline: BatchedPipeline
    batch_size: int


# Device copies of leaf image tensors (GPU-resident data): id(cpu tensor) -> (cpu, device copy).
_DEVICE_IMAGES: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def _on_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    key = (id(images), str(device))
    hit = _DEVICE_IMAGES.get(key)
    if hit is None or hit[0] is not images:
        if len(_DEVICE_IMAGES) > 16:  # keep the few live datasets, not every experience ever seen
            _DEVICE_IMAGES.clear()
        hit = (images, images.to(device))
        _DEVICE_IMAGES[key] = hit
    return hit[1]


class BatchIterator:
    """Minibatches of one or more datasets, with the semantics of Avalanche's loaders.

    One dataset: a shuffled (or ordered) pass, ``ceil(n / batch_size)`` batches (``floor`` with
    ``drop_last``). Several datasets (Avalanche's ``MultiDatasetDataLoader``, e.g. replay): each
    minibatch concatenates ``batch_sizes[i]`` samples of every dataset in list order; the epoch ends
    with the ``termination`` dataset; the others restart reshuffled (``oversample``) or drop out.

    Every epoch draws its order and augmentations from generators seeded by
    ``mix_seed(seed, epoch, ...)``: the same seed gives the same batches (resume gives identical
    numbers). Under ``torch.distributed`` each rank takes its share of every permutation, as
    ``DistributedSampler`` does.

    Args:
        parts: the datasets, their compiled pipelines and per-minibatch sample counts.
        shuffle: reshuffle each epoch.
        drop_last: drop each dataset's last incomplete batch.
        termination: index of the dataset whose end ends the epoch.
        oversample: restart the other datasets when they run out.
        seed: base seed (e.g. ``mix_seed(run_seed, experience, 'train')``).
        device: where batches are produced (the model's device).
        data_on_device: keep the uint8 images on ``device`` (GPU-resident data).
    """

    def __init__(
        self,
        parts: Sequence[_Part],
        *,
        shuffle: bool,
        drop_last: bool = False,
        termination: int = 0,
        oversample: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        data_on_device: bool = False,
    ):
        self.parts = list(parts)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.termination = termination
        self.oversample = oversample
        self.seed = int(seed)
        self.device = torch.device(device)
        self.data_on_device = data_on_device and self.device.type != "cpu"
        self.rank, self.world_size = _distributed()
        self.epoch = 0

    def _shard_size(self, n: int) -> int:
        return math.ceil(n / self.world_size) if self.world_size > 1 else n

    def _num_batches(self, part: _Part) -> int:
        n = self._shard_size(len(part.view))
        return n // part.batch_size if self.drop_last else math.ceil(n / part.batch_size)

    def __len__(self) -> int:
        return self._num_batches(self.parts[self.termination])

    def _order(self, n: int, generator: torch.Generator) -> torch.Tensor:
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        if self.world_size > 1:  # DistributedSampler: pad by wrapping, then every world_size-th
            total = self._shard_size(n) * self.world_size
            order = torch.cat([order, order[: total - n]]) if total > n else order
            order = order[self.rank : total : self.world_size]
        return order

    def _chunks(self, part: _Part, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = self._order(len(part.view), generator)
        stop = self._num_batches(part) * part.batch_size
        for start in range(0, min(stop, len(order)), part.batch_size):
            yield order[start : start + part.batch_size]

    def _load(self, part: _Part, rows: torch.Tensor, generator: torch.Generator | None):
        view = part.view
        if self.data_on_device:
            images = _on_device(view.images, self.device)
            x = images.index_select(0, rows.to(self.device))
        else:
            x = view.images.index_select(0, rows).to(self.device, non_blocking=True)
        x = part.pipeline(x, generator)
        out = [x, view.targets[rows]]
        if view.sample_indices is not None:
            out.append(view.sample_indices[rows])
        out.append(view.task_labels[rows])
        return out

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order_gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, "order"))
        augment = None
        if any(p.pipeline.random for p in self.parts):
            augment = torch.Generator(device=self.device)
            augment.manual_seed(mix_seed(self.seed, epoch, "augment"))
        streams: list[Iterator[torch.Tensor] | None] = [
            self._chunks(p, order_gen) for p in self.parts
        ]
        for _ in range(len(self)):
            pieces = []
            for k, part in enumerate(self.parts):
                rows = self._next_rows(k, streams, order_gen)
                if rows is None:
                    if k == self.termination:
                        return
                    continue
                pieces.append(self._load(part, rows, augment))
            if len(pieces) == 1:
                batch = pieces[0]
            else:
                batch = [torch.cat(column) for column in zip(*pieces)]
            yield [t.to(self.device, non_blocking=True) for t in batch]

    def _next_rows(self, k: int, streams: list, generator: torch.Generator) -> torch.Tensor | None:
        stream = streams[k]
        if stream is None:
            return None
        rows = next(stream, None)
        if rows is None and k != self.termination and self.oversample:
            streams[k] = stream = self._chunks(self.parts[k], generator)
            rows = next(stream, None)
        if rows is None:
            streams[k] = None
        return rows


def _compile_part(
    dataset: Any, batch_size: int, memory_format: torch.memory_format
) -> tuple[_Part | None, str]:
    """The dataset's view and compiled pipeline, or None and why not."""
    view = tensor_view(dataset)
    if view is None:
        return None, why_no_view(dataset) or "no tensor view"
    pipeline = compile_pipeline(view.transforms, memory_format)
    if pipeline is None:
        return None, explain_pipeline(view.transforms) or "no batched form"
    return _Part(view, pipeline, int(batch_size)), repr(pipeline)


def batched_iterator_for(
    loader: Any,
    *,
    seed: int,
    device: str | torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    data_on_device: bool = False,
) -> tuple[BatchIterator | None, str]:
    """A :class:`BatchIterator` doing what ``loader`` does, or ``(None, reason)``.

    Understands Avalanche's ``MultiDatasetDataLoader`` family (``SingleDatasetDataLoader``,
    ``TaskBalancedDataLoader``, ``ReplayDataLoader``) and a plain ``DataLoader``.
    """
    from avalanche.benchmarks.utils.data_loader import MultiDatasetDataLoader  # noqa: PLC0415

    if isinstance(loader, MultiDatasetDataLoader):
        if loader.never_ending:
            return None, "a never-ending loader"
        kwargs = loader.loader_kwargs
        datasets, sizes = loader.datasets, loader.batch_sizes
        shuffle, drop_last = (
            bool(kwargs.get("shuffle", False)),
            bool(kwargs.get("drop_last", False)),
        )
        termination, oversample = loader.termination_dataset, loader.oversample_small_datasets
    elif isinstance(loader, DataLoader) and loader.batch_size is not None:
        datasets, sizes = [loader.dataset], [loader.batch_size]
        shuffle, drop_last = isinstance(loader.sampler, RandomSampler), loader.drop_last
        termination, oversample = 0, False
    else:
        return None, f"{type(loader).__name__} is not a loader it knows"
    parts, described = [], []
    for dataset, size in zip(datasets, sizes):
        part, what = _compile_part(dataset, size, memory_format)
        if part is None:
            return None, what
        parts.append(part)
        described.append(what)
    iterator = BatchIterator(
        parts,
        shuffle=shuffle,
        drop_last=drop_last,
        termination=termination,
        oversample=oversample,
        seed=seed,
        device=device,
        data_on_device=data_on_device,
    )
    return iterator, " + ".join(dict.fromkeys(described))


def iter_batches(
    dataset: Any,
    batch_size: int,
    *,
    train: bool,
    shuffle: bool,
    generator: torch.Generator | int | None = None,
    device: str | torch.device = "cpu",
    memory_format: torch.memory_format | None = None,
    data_on_device: bool = False,
) -> BatchIterator | None:
    """Batched minibatches of ``dataset`` (None when it has no tensor view or batched pipeline).

    Args:
        dataset: an Avalanche dataset.
        batch_size: samples per minibatch.
        train: use the ``train`` transform group (augmentation), else ``eval``.
        shuffle: reshuffle each epoch.
        generator: the seed: an int, or a ``torch.Generator`` whose next number is taken.
        device: where batches are produced.
        memory_format: layout of the images (default: NCHW).
        data_on_device: keep the uint8 images on ``device``.
    """
    dataset = dataset.train() if train else dataset.eval()
    part, _ = _compile_part(dataset, batch_size, memory_format or torch.contiguous_format)
    if part is None:
        return None
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (), generator=generator))
    else:
        seed = int(generator or 0)
    return BatchIterator(
        [part], shuffle=shuffle, seed=seed, device=device, data_on_device=data_on_device
    )


def eval_batches(
    dataset: Any,
    batch_size: int,
    device: str | torch.device = "cpu",
    memory_format: torch.memory_format | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Minibatches of ``dataset`` as it is (its current transform group), in order, on ``device``:
    batched when possible, else a per-sample ``DataLoader`` (the choice is logged once)."""
    part, what = _compile_part(dataset, batch_size, memory_format or torch.contiguous_format)
    if part is None:
        _log_once(f"data path (plugin pass): per-sample ({what})")
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
            yield [t.to(device) if torch.is_tensor(t) else t for t in batch]
        return
    iterator = BatchIterator([part], shuffle=False, device=device)
    iterator.rank, iterator.world_size = 0, 1  # plugin passes see the whole dataset on every rank
    yield from iterator


def extract(
    model: torch.nn.Module,
    dataset: Any,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Logits, pooled features and sample indices of every sample of ``dataset`` (eval group), in
    order, with the model in eval mode under inference mode (its modes are restored).

    Returns:
        ``(logits [N, C], features [N, D] | None, sample_indices [N])`` on the CPU; features are
        ``model.last_features`` (None if the model has none); sample indices are the items' own
        (hidden-label datasets) or positions.
    """
    modes = {name: m.training for name, m in model.named_modules()}
    logits, features, indices = [], [], []
    position = 0
    model.eval()
    try:
        with torch.inference_mode():
            fmt = model_memory_format(model)
            for batch in eval_batches(dataset.eval(), batch_size, device, fmt):
                out = model(batch[0])
                logits.append(out.float().cpu())
                feats = getattr(model, "last_features", None)
                if feats is not None:
                    features.append(feats.float().cpu())
                if len(batch) >= 4:
                    indices.append(batch[2].long().cpu())
                else:
                    indices.append(torch.arange(position, position + len(out)))
                position += len(out)
    finally:
        for name, m in model.named_modules():
            m.train(modes.get(name, True))
    if not logits:
        return torch.empty(0), None, torch.empty(0, dtype=torch.long)
    return (
        torch.cat(logits),
        torch.cat(features) if len(features) == len(logits) else None,
        torch.cat(indices),
    )


def _has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


# Avalanche components that flatten parameter gradients with ``.view(-1)``, which a channels_last
# convolution weight does not allow (``view size is not compatible``): 'auto' keeps NCHW for them.
_GRADIENT_VIEWERS = {"AGEM", "AGEMPlugin", "GEM", "GEMPlugin"}


def _flattens_gradients(strategy: Any) -> bool:
    names = {type(strategy).__name__} | {type(p).__name__ for p in getattr(strategy, "plugins", [])}
    return bool(names & _GRADIENT_VIEWERS)


class BatchedDataPlugin(SupervisedPlugin):
    """Puts the batched data path under an Avalanche strategy (the runner adds it; see README).

    In ``before_training_exp`` (Avalanche builds the loader, and a ``ReplayPlugin`` replaces it,
    before this hook runs) and in ``before_eval_exp``, ``strategy.dataloader`` is swapped for a
    :class:`BatchIterator` with the same batches, sizes and length when every dataset behind it
    compiles; otherwise the per-sample loader stays. Each distinct choice is logged once.

    Args:
        seed: the run seed; each experience's order and augmentation derive from it.
        channels_last: ``True``/``False``, or ``'auto'``: channels_last for models with 2-D
            convolutions (faster on the CPUs measured in benchmarks/RESULTS.md, and cuDNN's
            preferred layout under mixed precision). The model is converted too.
        data_on_device: on CUDA, keep each dataset's uint8 images on the GPU (``'auto'``: yes).
        log: called with the one-line choices (default: the ``logging`` module).
    """

    stateless = True  # nothing to checkpoint: every iterator is rebuilt from the seed and the experience index

    def __init__(
        self,
        seed: int = 0,
        channels_last: bool | str = "auto",
        data_on_device: bool | str = "auto",
        log: Callable[[str], None] | None = None,
    ):
        super().__init__()
        self.seed = int(seed)
        self.channels_last = channels_last
        self.data_on_device = data_on_device
        self.log = log
        self.choices: dict[str, str] = {}
        self._said: set[str] = set()

    def _memory_format(self, strategy: Any) -> torch.memory_format:
        wanted = self.channels_last
        if wanted == "auto":
            wanted = _has_conv(strategy.model) and not _flattens_gradients(strategy)
        if wanted:
            strategy.model.to(memory_format=torch.channels_last)
            return torch.channels_last
        return torch.contiguous_format

    def _swap(self, strategy: Any, phase: str, seed: int) -> None:
        fmt = self._memory_format(strategy)
        on_device = self.data_on_device in (True, "auto")
        iterator, what = batched_iterator_for(
            strategy.dataloader,
            seed=seed,
            device=strategy.device,
            memory_format=fmt,
            data_on_device=on_device,
        )
        if iterator is not None:
            strategy.dataloader = iterator
            message = f"data path ({phase}): batched on {strategy.device}: {what}"
        else:
            message = f"data path ({phase}): per-sample ({what})"
        self.choices[phase] = message
        if message not in self._said:
            self._said.add(message)
            (self.log or _log.info)(message)

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        index = int(getattr(strategy.experience, "current_experience", 0))
        self._swap(strategy, "train", mix_seed(self.seed, index, "train"))

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        """The epoch's batches are seeded by the strategy's epoch counter, not the iterator's own:
        a run resumed inside an experience (a fresh iterator) draws the same batches as an
        uninterrupted one for the epochs that remain."""
        loader = getattr(strategy, "dataloader", None)
        if isinstance(loader, BatchIterator):
            loader.epoch = int(strategy.clock.train_exp_epochs)

    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        index = int(getattr(strategy.experience, "current_experience", 0))
        self._swap(strategy, "eval", mix_seed(self.seed, index, "eval"))
