"""CUDA speed options of the ``runtime`` block: mixed precision, ``torch.compile``, cuDNN autotuning.

* :class:`MixedPrecisionPlugin`: the strategy's forward passes (train and eval) run under
  ``torch.autocast`` (bf16 where the GPU supports it, else fp16 with a ``GradScaler`` around
  backward and the optimizer step); the criterion and every plugin see float32 logits.
* :func:`compile_model`: ``torch.compile`` in place (``nn.Module.compile``), so state-dict keys,
  checkpoints and ``model.grow`` are unchanged.
* :func:`set_cudnn_benchmark`: ``torch.backends.cudnn.benchmark``.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin

__all__ = ["MixedPrecisionPlugin", "amp_dtype", "compile_model", "set_cudnn_benchmark"]


def amp_dtype(choice: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp`` on ``device`` (None: full precision).

    ``'auto'``: bf16 on a GPU that supports it, else fp16; never on the CPU (CPU autocast is
    slower than float32 for these convolution nets).
    """
    if choice is False or device.type != "cuda":
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


class MixedPrecisionPlugin(SupervisedPlugin):
    """Autocast for the strategy's own forward, loss scaling for fp16.

    Installs itself on the strategy (its ``forward``, ``backward`` and ``optimizer_step``) at the
    first experience. The loss that metrics and plugins see stays unscaled; with fp16 a step whose
    gradients overflowed is skipped by the ``GradScaler`` (as ``torch.amp`` prescribes), and
    ``after_backward`` plugins see scaled gradients. Teachers and plugin passes that call the model
    directly run in float32.

    Args:
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        device_type: the autocast device type (``'cuda'``; ``'cpu'`` works for tests).
    """

    def __init__(self, dtype: torch.dtype, device_type: str = "cuda"):
        super().__init__()
        self.dtype = dtype
        self.device_type = device_type
        self.scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None
        self._installed_on: int | None = None

    def _install(self, strategy: Any) -> None:
        if self._installed_on == id(strategy):
            return
        self._installed_on = id(strategy)
        forward = strategy.forward

        def autocast_forward():
            with torch.autocast(self.device_type, dtype=self.dtype):
                out = forward()
            return out.float() if torch.is_tensor(out) else out

        strategy.forward = autocast_forward
        if self.scaler is None:
            return
        scaler = self.scaler

        def scaled_backward():
            scaler.scale(strategy.loss).backward(retain_graph=strategy.retain_graph)

        def scaled_step():
            scaler.step(strategy.optimizer)
            scaler.update()

        strategy.backward = scaled_backward
        strategy.optimizer_step = scaled_step

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._install(strategy)

    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._install(strategy)

    def state_dict(self) -> dict[str, Any]:
        """The GradScaler's scale and growth tracker (fp16), else nothing."""
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""
        if self.scaler is not None and state_dict.get("scaler"):
            self.scaler.load_state_dict(state_dict["scaler"])


def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """Compiles the backbone (else the whole model) in place with ``nn.Module.compile``.

    In place: parameters, state-dict keys and the classifier stay the model's own, so checkpoints,
    ``load_from`` and head growth work as without compilation; the growing head is left eager.
    """
    target = getattr(model, "backbone", None) or model
    target.compile()
    return model


def set_cudnn_benchmark(choice: bool | str, device: torch.device) -> bool:
    """Sets ``torch.backends.cudnn.benchmark`` (``'auto'``: on for CUDA); returns the value set."""
    value = device.type == "cuda" if choice == "auto" else bool(choice)
    torch.backends.cudnn.benchmark = value
    return value
