"""Fresh augmented views of chosen rows of a dataset, for plugins that draw images of their own
beside the strategy's minibatch (the novel head's second view, replayed known exemplars)."""

from __future__ import annotations

from typing import Any

import torch

from avalanche_ext.data.batched import model_memory_format
from avalanche_ext.data.batched_transforms import compile_pipeline
from avalanche_ext.data.tensor_view import tensor_view

__all__ = ["AugmentedRows"]


class AugmentedRows:
    """Augmented training views of rows of one dataset.

    Where the dataset has a uint8 tensor view whose transforms compile to the batched pipeline,
    the rows' images are gathered from the view and augmented on the device in one call, drawing
    from one seeded device generator (the same path as the strategy's own minibatches); otherwise
    each row goes through the dataset's per-sample transforms (slower, same semantics).

    Args:
        dataset: the dataset in training mode; a row is a position in it (and in its view).
        model: the model the views feed (sets the pipeline's memory format).
        device: where the views are made.
        seed: seeds the device generator of the batched pipeline.
        generator: a device generator to draw from instead (shared by several datasets' views);
            ``seed`` is then unused.
    """

    def __init__(
        self,
        dataset: Any,
        model: torch.nn.Module,
        device: Any,
        seed: int,
        generator: torch.Generator | None = None,
    ) -> None:
        self.dataset = dataset
        self.view = tensor_view(dataset)
        self.pipeline = None
        if self.view is not None:
            self.pipeline = compile_pipeline(self.view.transforms, model_memory_format(model))
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        self.generator = generator

    @property
    def batched(self) -> bool:
        """Whether views come from the batched pipeline (else per-sample transforms)."""
        return self.pipeline is not None

    def targets(self) -> torch.Tensor:
        """``[n]`` long: every row's label (from the view when batched)."""
        if self.batched:
            return self.view.targets.long()
        return torch.as_tensor([int(t) for t in self.dataset.targets], dtype=torch.long)

    def __call__(self, rows: torch.Tensor, device: Any) -> torch.Tensor:
        """``[len(rows), C, H, W]``: one fresh augmented view of each row, on ``device``."""
        if self.batched:
            images = self.view.images.index_select(0, rows.cpu().long()).to(device)
            return self.pipeline(images, self.generator)
        return torch.stack([self.dataset[int(r)][0] for r in rows.cpu()]).to(device)
