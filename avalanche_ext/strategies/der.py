"""Avalanche's DER (dark experience replay) with a classifier that grows.

Avalanche 0.6 stores each memory sample's logits at the width the head had then; once the head grows
(class-incremental streams, our ``MMClassifier``), the MSE between the replayed samples' new
logits and the stored ones fails with a size mismatch (and samples stored at different widths could
not even be batched together). Here the stored logits are padded with NaN to a fixed ``logit_width``
and, at training time, the columns that did not exist when a sample was stored are filled with the
model's own (detached) outputs: they add no loss and no gradient, so the distillation covers exactly
the classes the stored logits knew. The MSE is averaged over all current columns (Avalanche's
``F.mse_loss``), so it is scaled by ``stored classes / current classes`` compared with an MSE over
the stored columns only.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from avalanche.training.supervised import DER as _AvalancheDER
from avalanche.training.supervised import der as _der_module

from avalanche_ext.errors import ConfigError
from avalanche_ext.registry import STRATEGIES

__all__ = ["DER", "fill_missing_logits", "pad_logits"]


def pad_logits(rows: list[torch.Tensor], width: int) -> list[torch.Tensor]:
    """Each logit row padded with NaN to ``width`` columns."""
    out = []
    for row in rows:
        if row.numel() > width:
            raise ConfigError(f"cl_strategy.logit_width: {width} is below the head's {row.numel()}")
        pad = torch.full((width - row.numel(),), float("nan"), dtype=row.dtype)
        out.append(torch.cat([row, pad]))
    return out


def fill_missing_logits(stored: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """``stored`` cut to ``current``'s width, NaN (unknown) entries replaced by ``current``
    detached."""
    width = current.shape[1]
    if stored.shape[1] < width:
        pad = stored.new_full((stored.shape[0], width - stored.shape[1]), float("nan"))
        stored = torch.cat([stored, pad], dim=1)
    stored = stored[:, :width]
    return torch.where(torch.isnan(stored), current.detach(), stored)


@STRATEGIES.register_module()
class DER(_AvalancheDER):
    """Avalanche's ``DER`` (same arguments) plus ``logit_width`` (default 1000): the width the
    stored logits are padded to, at least the largest head of the run."""

    def __init__(self, *args, logit_width: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.logit_width = int(logit_width)

    @contextlib.contextmanager
    def _padded_logits(self):
        original = _der_module.compute_dataset_logits

        def padded(*args, **kwargs):
            return pad_logits(original(*args, **kwargs), self.logit_width)

        _der_module.compute_dataset_logits = padded
        try:
            yield
        finally:
            _der_module.compute_dataset_logits = original

    def _after_training_exp(self, **kwargs):
        with self._padded_logits():
            super()._after_training_exp(**kwargs)

    def _after_forward(self, **kwargs):
        if self.replay_loader is not None and getattr(self, "batch_logits", None) is not None:
            n = self.batch_size_mem
            self.batch_logits = fill_missing_logits(self.batch_logits, self.mb_output[:n])
        super()._after_forward(**kwargs)


_sig = inspect.signature(_AvalancheDER.__init__)
DER.__init__.__signature__ = _sig.replace(
    parameters=[
        *[p for p in _sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD],
        inspect.Parameter("logit_width", inspect.Parameter.KEYWORD_ONLY, default=1000),
    ]
)
