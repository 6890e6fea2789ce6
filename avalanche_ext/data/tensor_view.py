"""The in-memory tensors behind an Avalanche dataset, found without touching a single sample.

An Avalanche dataset is a tree of subsets and concatenations (``FlatData``) over leaf datasets,
with transform groups at the nodes. :func:`tensor_view` walks that tree once with index arrays and
returns the rows of the leaves' uint8 image tensor in dataset order, what every item's label, sample
index and task label would be, and the image transform the current group applies.

Leaves expose their tensors through ``batch_tensors()`` (``avalanche_ext.scenario``): a hidden-label
leaf gives its images only, so a view of a discovery experience carries sample indices and
``UNLABELED`` targets, never the true labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["LeafTensors", "TensorView", "tensor_view", "why_no_view"]


@dataclass
class LeafTensors:
    """What a leaf dataset yields, as whole tensors.

    Args:
        images: ``[N, ...]`` tensor; item ``i`` yields ``images[i]`` as its ``x``.
        targets: ``[N]`` labels it yields, or None when it yields ``UNLABELED`` and its own index
            (``(x, UNLABELED, i)``, a hidden-label leaf).
    """

    images: torch.Tensor
    targets: torch.Tensor | None


@dataclass
class TensorView:
    """An Avalanche dataset as tensors (row ``k`` = the dataset's item ``k``).

    Args:
        images: ``[n, ...]`` the untransformed inputs (the leaf tensor itself when the dataset is
            a whole single leaf, else the gathered rows).
        targets: ``[n]`` long, the ``y`` each item yields (``UNLABELED`` for hidden-label items).
        sample_indices: ``[n]`` long for hidden-label datasets (items ``(x, y, index, t)``), else None.
        task_labels: ``[n]`` long.
        transforms: the per-sample image steps of the current transform group, innermost first.
        group: the transform group (``'train'`` / ``'eval'``).
    """

    images: torch.Tensor
    targets: torch.Tensor
    sample_indices: torch.Tensor | None
    task_labels: torch.Tensor
    transforms: list[Any]
    group: str

    def __len__(self) -> int:
        return len(self.targets)


class _NoView(Exception):
    """The dataset has a part that cannot be read as tensors; the message says which."""


def _indices_array(indices: Any) -> np.ndarray:
    """Avalanche's index containers (list, ``LazyIndices``, ``LazyRange``) as an int64 array."""
    if isinstance(indices, np.ndarray):
        return indices.astype(np.int64, copy=False)
    to_eager = getattr(indices, "_to_eager", None)
    if callable(to_eager):  # LazyIndices / LazyRange keep an eager numpy copy
        to_eager()
        eager = getattr(indices, "_eager_list", None)
        if eager is not None:
            return np.asarray(eager, dtype=np.int64)
    if type(indices).__name__ == "LazyRange":
        return np.arange(len(indices), dtype=np.int64) + (indices._start + indices._offset)
    return np.asarray(list(indices) if not isinstance(indices, list) else indices, dtype=np.int64)


def _x_transforms(groups: Any, group: str) -> list[Any]:
    """The image (position 0) transforms of one node's transform groups for ``group``."""
    from avalanche.benchmarks.utils.transforms import (  # noqa: PLC0415
        MultiParamCompose,
        TupleTransform,
    )

    if groups is None:
        return []
    table = getattr(groups, "transform_groups", None)
    if table is None:
        raise _NoView(f"unknown transform groups {type(groups).__name__}")
    transform = table.get(group) if hasattr(table, "get") else table[group]
    out: list[Any] = []
    pending = [transform]
    while pending:
        t = pending.pop(0)
        if t is None:
            continue
        if isinstance(t, MultiParamCompose):
            pending = list(t.transforms) + pending
        elif isinstance(t, TupleTransform):
            if any(extra is not None for extra in t.transforms[1:]):
                raise _NoView("a target transform is set")
            if t.transforms:
                out.append(t.transforms[0])
        else:
            raise _NoView(f"multi-argument transform {type(t).__name__}")
    return out


@dataclass
class _Flat:
    leaves: list[Any]  # leaf datasets, by id in ``leaf_id``
    leaf_id: np.ndarray
    leaf_index: np.ndarray
    chains: list[list[Any]]  # per leaf: the transforms applied above it (innermost first)


def _walk(node: Any, group: str) -> _Flat:
    """Flattens ``node`` into (leaf, row) pairs, with the transforms above each leaf."""
    reader = getattr(node, "batch_tensors", None)
    if callable(reader):
        if reader() is None:
            raise _NoView(f"{type(node).__name__} does not hold its inputs as one tensor")
        n = len(node)
        return _Flat([node], np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64), [[]])
    children = getattr(node, "_datasets", None)
    if children is None:
        raise _NoView(f"{type(node).__name__} has no in-memory tensors")
    parts = [_walk(child, group) for child in children]
    leaves: list[Any] = []
    chains: list[list[Any]] = []
    ids, rows = [], []
    for part in parts:
        remap = []
        for leaf, chain in zip(part.leaves, part.chains):
            for k, (known, known_chain) in enumerate(zip(leaves, chains)):
                if known is leaf and _same_chain(known_chain, chain):
                    remap.append(k)
                    break
            else:
                leaves.append(leaf)
                chains.append(chain)
                remap.append(len(leaves) - 1)
        ids.append(np.asarray(remap, dtype=np.int64)[part.leaf_id])
        rows.append(part.leaf_index)
    leaf_id = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
    leaf_index = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    indices = getattr(node, "_indices", None)
    if indices is not None:
        take = _indices_array(indices)
        leaf_id, leaf_index = leaf_id[take], leaf_index[take]
    own = _x_transforms(getattr(node, "_frozen_transform_groups", None), group)
    own += _x_transforms(getattr(node, "_transform_groups", None), group)
    if own:
        chains = [chain + own for chain in chains]
    return _Flat(leaves, leaf_id, leaf_index, chains)


def _same_chain(a: list[Any], b: list[Any]) -> bool:
    """Two transform chains do the same thing (the same objects, or equal reprs)."""
    from avalanche_ext.data.batched_transforms import flatten_transforms  # noqa: PLC0415

    fa, fb = flatten_transforms(a), flatten_transforms(b)
    return len(fa) == len(fb) and all(x is y or repr(x) == repr(y) for x, y in zip(fa, fb))


def _task_labels(dataset: Any, n: int) -> torch.Tensor:
    attr = getattr(dataset, "targets_task_labels", None)
    if attr is None:
        raise _NoView("no task labels")
    uniques = attr.uniques
    if len(uniques) == 1:
        return torch.full((n,), int(next(iter(uniques))), dtype=torch.long)
    return torch.as_tensor(list(attr), dtype=torch.long)


def _build_view(dataset: Any) -> TensorView:
    flat_data = getattr(dataset, "_flat_data", None)
    if flat_data is None:
        raise _NoView(f"{type(dataset).__name__} is not an Avalanche dataset")
    appended = [a.name for a in dataset._data_attributes.values() if a.use_in_getitem]
    if appended != ["targets_task_labels"]:
        raise _NoView(f"items carry extra attributes {appended}")
    if len(dataset) == 0:
        raise _NoView("it is empty")
    group = flat_data._transform_groups.current_group
    flat = _walk(flat_data, group)
    chain = flat.chains[0] if flat.chains else []
    if any(not _same_chain(chain, other) for other in flat.chains[1:]):
        raise _NoView("its parts use different transforms")
    sources = [leaf.batch_tensors() for leaf in flat.leaves]
    hidden = [s.targets is None for s in sources]
    if len(set(hidden)) > 1:
        raise _NoView("it mixes labeled and hidden-label parts")
    n = len(flat.leaf_id)
    if n != len(dataset):
        raise _NoView(f"resolved {n} items for a dataset of {len(dataset)}")
    leaf_id = torch.from_numpy(flat.leaf_id)
    leaf_index = torch.from_numpy(flat.leaf_index)
    whole = (
        len(sources) == 1
        and n == len(sources[0].images)
        and torch.equal(leaf_index, torch.arange(n))
    )
    if whole:
        images = sources[0].images
    elif len(sources) == 1:
        images = sources[0].images.index_select(0, leaf_index)
    else:
        shape = sources[0].images.shape[1:]
        if any(
            s.images.shape[1:] != shape or s.images.dtype != sources[0].images.dtype
            for s in sources
        ):
            raise _NoView("its parts hold images of different shapes")
        images = torch.empty((n, *shape), dtype=sources[0].images.dtype)
        for k, source in enumerate(sources):
            rows = (leaf_id == k).nonzero().flatten()
            images[rows] = source.images.index_select(0, leaf_index[rows])
    if hidden and hidden[0]:
        from avalanche_ext.scenario import UNLABELED  # noqa: PLC0415

        targets = torch.full((n,), UNLABELED, dtype=torch.long)
        sample_indices = leaf_index.clone()
    else:
        targets = torch.empty(n, dtype=torch.long)
        for k, source in enumerate(sources):
            rows = (leaf_id == k).nonzero().flatten()
            targets[rows] = source.targets.long()[leaf_index[rows]]
        sample_indices = None
    return TensorView(
        images=images,
        targets=targets,
        sample_indices=sample_indices,
        task_labels=_task_labels(dataset, n),
        transforms=list(chain),
        group=group,
    )


def tensor_view(dataset: Any) -> TensorView | None:
    """The dataset as tensors, or None when some part of it is not an in-memory tensor leaf.

    Args:
        dataset: an Avalanche dataset (any subset / concatenation / transform group of the
            scenarios' tensor datasets).
    """
    try:
        return _build_view(dataset)
    except _NoView:
        return None


def why_no_view(dataset: Any) -> str | None:
    """Why :func:`tensor_view` returns None for ``dataset`` (None: it does not)."""
    try:
        _build_view(dataset)
    except _NoView as err:
        return str(err)
    return None
