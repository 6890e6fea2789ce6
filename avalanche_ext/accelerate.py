"""Speed options of the ``runtime`` block: mixed precision, ``torch.compile``, cuDNN autotuning.

* :class:`MixedPrecisionPlugin`: the strategy's forward passes (train and eval) run under
  ``torch.autocast`` (bf16 where the GPU supports it, else fp16 with a ``GradScaler`` around
  backward and the optimizer step; bf16 on a CPU with native bf16 when asked for); the criterion
  and every plugin see float32 logits.
* :func:`compile_model`: ``torch.compile`` in place (``nn.Module.compile``), so state-dict keys,
  checkpoints and ``model.grow`` are unchanged.
* :func:`set_cudnn_benchmark`: ``torch.backends.cudnn.benchmark``.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.plugins import SupervisedPlugin

from avalanche_ext.errors import ConfigError

__all__ = [
    "MixedPrecisionPlugin",
    "amp_dtype",
    "compile_model",
    "precision_name",
    "set_cudnn_benchmark",
]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), where oneDNN's bf16
    convolutions run faster than float32; elsewhere bf16 is emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(choice: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``runtime.amp`` on ``device`` (None: full precision).

    On a GPU, ``'auto'`` is bf16 where the GPU supports it, else fp16. On the CPU, ``'auto'`` stays
    float32 (every CPU number in the docs is float32, and a CPU without native bf16 would run
    slower); ``'bf16'`` asks for bf16 autocast explicitly and needs a CPU with native bf16.

    Raises:
        ConfigError: ``'fp16'`` on the CPU, or ``'bf16'`` on a CPU without native bf16: an
            explicit choice that cannot be honoured is refused rather than silently ignored.
    """
    if choice is False:
        return None
    if device.type == "cuda":
        if choice == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]
    if choice == "auto":
        return None
    if choice == "fp16":
        raise ConfigError("runtime.amp: 'fp16' autocast needs a CUDA device; on the CPU use 'bf16'")
    if not cpu_has_native_bf16():
        raise ConfigError(
            "runtime.amp: 'bf16' needs a CPU with native bf16 (AVX512-BF16 or AMX); this one "
            "would run bf16 slower than float32: use amp=False"
        )
    return torch.bfloat16


def precision_name(dtype: torch.dtype | None) -> str:
    """How a run computed, for results.json and the report: ``'float32'``, ``'bfloat16 autocast'``
    or ``'float16 autocast + GradScaler'`` (``dtype``: what :func:`amp_dtype` chose)."""
    if dtype is None:
        return "float32"
    name = str(dtype).replace("torch.", "")
    return f"{name} autocast" + (" + GradScaler" if dtype == torch.float16 else "")


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
