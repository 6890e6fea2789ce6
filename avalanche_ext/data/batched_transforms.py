"""Per-sample torchvision pipelines compiled to one vectorised transform over a uint8 minibatch.

``compile_pipeline(transform)`` turns the ``train_pipeline`` / ``test_pipeline`` vocabulary
(``RandomCrop`` with padding, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, ...) into a
:class:`BatchedPipeline` that runs once per minibatch ``[B, C, H, W]`` on the data's device, with one
random draw per sample (same distribution as the per-sample transform). A step without a batched form
makes the whole pipeline ``None``: the caller keeps the per-sample path.

Batched forms live in :data:`BATCHED_TRANSFORMS`, keyed by the transform's type name; add one with
``@register_batched('MyTransform')`` on a function ``transform -> BatchedOp | None``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as torch_f
from torchvision.transforms import v2

from avalanche_ext.transforms import ToTensor

__all__ = [
    "BATCHED_TRANSFORMS",
    "BatchedOp",
    "BatchedPipeline",
    "compile_pipeline",
    "explain_pipeline",
    "flatten_transforms",
    "register_batched",
]


@dataclass
class BatchedOp:
    """One pipeline step over a batch.

    Args:
        name: what it does, for the log line.
        fn: ``fn(x [B, C, H, W], generator) -> x``; ``generator`` drives the per-sample draws.
        random: whether ``fn`` draws random numbers.
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    random: bool = False


BATCHED_TRANSFORMS: dict[str, Callable[[Any], BatchedOp | None]] = {}
"""Transform type name -> ``f(transform) -> BatchedOp`` (None: this instance has no batched form)."""


def register_batched(*names: str) -> Callable:
    """Registers a batched form for the transform types ``names`` (decorator)."""

    def wrap(fn: Callable[[Any], BatchedOp | None]) -> Callable[[Any], BatchedOp | None]:
        for name in names:
            BATCHED_TRANSFORMS[name] = fn
        return fn

    return wrap


# ----------------------------------------------------------------------------- random steps
def _uniform_offsets(
    span: int, batch: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """One offset per sample, uniform over ``0..span`` (torchvision's ``randint(0, span + 1)``)."""
    if span <= 0:
        return torch.zeros(batch, dtype=torch.long, device=device)
    return torch.randint(0, span + 1, (batch,), generator=generator, device=device)


def _pad(x: torch.Tensor, pad: tuple[int, int, int, int], fill: Any, mode: str) -> torch.Tensor:
    """Pads ``[B, C, H, W]`` by ``(left, right, top, bottom)`` as ``v2.functional.pad`` does."""
    left, right, top, bottom = pad
    if not any(pad):
        return x
    if mode == "constant":
        b, c, h, w = x.shape
        out = torch.empty(
            (b, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device
        )
        values = torch.as_tensor(fill if fill is not None else 0, device=x.device).to(x.dtype)
        out[:] = values.view(1, -1, 1, 1) if values.numel() > 1 else values
        out[:, :, top : top + h, left : left + w] = x
        return out
    torch_mode = {"edge": "replicate", "reflect": "reflect"}[mode]
    return torch_f.pad(x.float(), (left, right, top, bottom), mode=torch_mode).to(x.dtype)


def _crop_at(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, th: int, tw: int):
    """``x[b, :, top[b]:top[b]+th, left[b]:left[b]+tw]`` for every sample, in one gather.

    Gathers whole pixels (all channels) from the NHWC view, so the result is channels_last in
    memory (a ``[B, th, tw, C]`` tensor seen as ``[B, C, th, tw]``).
    """
    b = x.shape[0]
    rows = top[:, None] + torch.arange(th, device=x.device)
    cols = left[:, None] + torch.arange(tw, device=x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    nhwc = x.permute(0, 2, 3, 1)
    return nhwc[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@register_batched("RandomCrop")
def _random_crop(t: Any) -> BatchedOp | None:
    if not isinstance(t, v2.RandomCrop) or t.padding_mode not in ("constant", "edge", "reflect"):
        return None
    fill = t._fill.get(torch.Tensor, t._fill.get("others")) if isinstance(t._fill, dict) else 0
    if isinstance(fill, dict):
        return None
    th, tw = t.size
    base = tuple(t.padding) if t.padding is not None else (0, 0, 0, 0)  # left, right, top, bottom

    def crop(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        left, right, top, bottom = base
        hp, wp = x.shape[-2] + top + bottom, x.shape[-1] + left + right
        if t.pad_if_needed:  # torchvision pads both sides by the full shortfall
            dh, dw = max(th - hp, 0), max(tw - wp, 0)
            top, bottom, left, right = top + dh, bottom + dh, left + dw, right + dw
            hp, wp = hp + 2 * dh, wp + 2 * dw
        if hp < th or wp < tw:
            raise ValueError(f"Required crop size {(th, tw)} is larger than input size {(hp, wp)}")
        padded = _pad(x, (left, right, top, bottom), fill, t.padding_mode)
        off_top = _uniform_offsets(hp - th, len(x), generator, x.device)
        off_left = _uniform_offsets(wp - tw, len(x), generator, x.device)
        return _crop_at(padded, off_top, off_left, th, tw)

    pad = f", padding={list(base)}" if any(base) else ""
    return BatchedOp(f"RandomCrop({th}x{tw}{pad})", crop, random=True)


def _random_flip(dim: int, label: str) -> Callable[[Any], BatchedOp | None]:
    def build(t: Any) -> BatchedOp | None:
        if not isinstance(t, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)):
            return None
        p = float(t.p)

        def flip(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
            # torchvision flips a sample when rand(1) < p
            mask = torch.rand(len(x), generator=generator, device=x.device) < p
            return torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)

        return BatchedOp(f"{label}(p={p:g})", flip, random=True)

    return build


register_batched("RandomHorizontalFlip")(_random_flip(-1, "RandomHorizontalFlip"))
register_batched("RandomVerticalFlip")(_random_flip(-2, "RandomVerticalFlip"))


# ----------------------------------------------------------------------------- deterministic steps
@register_batched("ToTensor")
def _to_tensor(t: Any) -> BatchedOp | None:
    if not isinstance(t, ToTensor):  # torchvision's v1 ToTensor is not batch-shaped
        return None

    def scale(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float()

    return BatchedOp("ToTensor", scale)


@register_batched("ToImage", "ToPureTensor", "Identity")
def _identity(t: Any) -> BatchedOp | None:
    return BatchedOp(type(t).__name__, lambda x, generator: x)


# v2 kernels treat leading dimensions as a batch: these transforms act identically on every
# sample, so the transform itself, applied to the batch, is its batched form.
_BATCH_SHAPED = (v2.Normalize, v2.ToDtype, v2.ConvertImageDtype, v2.CenterCrop, v2.Grayscale)


@register_batched("Normalize", "ToDtype", "ConvertImageDtype", "CenterCrop", "Grayscale")
def _batch_shaped(t: Any) -> BatchedOp | None:
    if not isinstance(t, _BATCH_SHAPED):
        return None
    return BatchedOp(
        type(t).__name__, lambda x, generator: t(x).as_subclass(torch.Tensor), random=False
    )


def _fuse_scale_normalize(ops: list[BatchedOp], transforms: list[Any]) -> list[BatchedOp]:
    """``ToTensor`` then ``Normalize`` -> one in-place pass (the same float operations, in the same
    order, as the two per-sample steps, so the result is bit-identical)."""
    out: list[BatchedOp] = []
    i = 0
    while i < len(ops):
        t, nxt = transforms[i], transforms[i + 1] if i + 1 < len(ops) else None
        if isinstance(t, ToTensor) and isinstance(nxt, v2.Normalize):
            mean = torch.as_tensor(nxt.mean, dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.as_tensor(nxt.std, dtype=torch.float32).view(1, -1, 1, 1)

            def fused(x, generator, mean=mean, std=std):
                x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
                return x.sub_(mean.to(x.device)).div_(std.to(x.device))

            out.append(BatchedOp("ToTensor+Normalize (fused)", fused))
            i += 2
            continue
        out.append(ops[i])
        i += 1
    return out


# ----------------------------------------------------------------------------- the pipeline
def flatten_transforms(transform: Any) -> list[Any]:
    """The steps of a transform: Compose (torchvision v1/v2) and lists are unrolled, None dropped."""
    if transform is None:
        return []
    if isinstance(transform, (list, tuple)):
        return [s for t in transform for s in flatten_transforms(t)]
    if type(transform).__name__ == "Compose" and hasattr(transform, "transforms"):
        return flatten_transforms(list(transform.transforms))
    return [transform]


class BatchedPipeline:
    """A compiled pipeline: ``pipeline(x_uint8 [B, C, H, W], generator) -> x``.

    Args:
        ops: the batched steps, in order.
        memory_format: layout of a 4-D result (``torch.channels_last`` or ``contiguous_format``).
    """

    def __init__(self, ops: Sequence[BatchedOp], memory_format=torch.contiguous_format):
        self.ops = list(ops)
        self.memory_format = memory_format

    @property
    def random(self) -> bool:
        """Whether any step draws random numbers (a generator is needed)."""
        return any(op.random for op in self.ops)

    def with_memory_format(self, memory_format) -> BatchedPipeline:
        """The same steps, producing ``memory_format``."""
        return BatchedPipeline(self.ops, memory_format)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        four_d = x.dim() == 4
        if four_d:  # uint8 is the cheapest place to change layout; elementwise steps keep it
            x = x.contiguous(memory_format=self.memory_format)
        for op in self.ops:
            x = op.fn(x, generator)
        return x.contiguous(memory_format=self.memory_format) if four_d else x.contiguous()

    def __repr__(self) -> str:
        steps = " -> ".join(op.name for op in self.ops) or "identity"
        layout = "channels_last" if self.memory_format == torch.channels_last else "NCHW"
        return f"BatchedPipeline({steps}; {layout})"


def _compile(transform: Any) -> tuple[list[BatchedOp] | None, list[Any], str | None]:
    from avalanche_ext.transforms import build_pipeline  # noqa: PLC0415

    if isinstance(transform, (list, tuple)) and all(isinstance(t, dict) for t in transform):
        transform = build_pipeline(list(transform))
    steps = flatten_transforms(transform)
    ops = []
    for step in steps:
        name = type(step).__name__
        make = BATCHED_TRANSFORMS.get(name)
        op = make(step) if make is not None else None
        if op is None:
            return None, steps, f"{name} has no batched form"
        ops.append(op)
    return ops, steps, None


def compile_pipeline(
    transform: Any, memory_format=torch.contiguous_format
) -> BatchedPipeline | None:
    """Compiles a per-sample pipeline to its batched form, or None when a step has none.

    Args:
        transform: a built transform (``v2.Compose``, a single transform, a list, None = identity)
            or a list of transform dicts (``train_pipeline``).
        memory_format: layout of the batched result.
    """
    ops, steps, _ = _compile(transform)
    if ops is None:
        return None
    return BatchedPipeline(_fuse_scale_normalize(ops, steps), memory_format)


def explain_pipeline(transform: Any) -> str | None:
    """Why ``transform`` has no batched form (None: it compiles)."""
    return _compile(transform)[2]
