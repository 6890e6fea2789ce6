"""The ``runtime`` config block: how an experiment runs (data path, memory layout, CUDA options),
never what it computes. The runner adds the plugins it implies with one call.

```python
runtime = dict(
    batched_data='auto',     # batched uint8 data path when the pipelines compile; False: per-sample
    channels_last='auto',    # model + batches in channels_last (auto: models with 2-D convs)
    data_on_device='auto',   # CUDA: keep the uint8 datasets on the GPU
    amp='auto',              # CUDA autocast: 'auto' (bf16 where supported, else fp16 + GradScaler),
                             # 'bf16', 'fp16', or False; never on the CPU
    compile=False,           # torch.compile the backbone (in place: checkpoints keep their keys)
    cudnn_benchmark='auto',  # torch.backends.cudnn.benchmark (auto: on for CUDA)
    on_non_finite='stop',    # a NaN/inf training loss: 'stop' the run there (exit 1, results.json
                             # "status": "failed"), or 'skip' the batch; NaN parameters always stop
)
```

``on_non_finite='skip'`` is the one key here that can change what is computed: it is where a user
says how a diverging run should behave, next to the other "how it runs" choices
(:mod:`avalanche_ext.non_finite`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from avalanche_ext.errors import ConfigError

__all__ = [
    "RuntimeOptions",
    "parse_runtime",
    "resolve_device",
    "runtime_plugins",
    "seed_everything",
]

_AUTO_BOOL = ("auto", True, False)


@dataclass(frozen=True)
class RuntimeOptions:
    """Validated ``runtime`` keys (see the module docstring).

    Args:
        batched_data: ``'auto'``/True (batched when possible) or False (always per-sample).
        channels_last: ``'auto'``, True or False.
        data_on_device: ``'auto'``, True or False (CUDA only).
        amp: ``'auto'``, ``'bf16'``, ``'fp16'`` or False.
        compile: ``torch.compile`` the backbone.
        cudnn_benchmark: ``'auto'``, True or False.
        on_non_finite: ``'stop'`` or ``'skip'``.
    """

    batched_data: bool | str = "auto"
    channels_last: bool | str = "auto"
    data_on_device: bool | str = "auto"
    amp: bool | str = "auto"
    compile: bool = False
    cudnn_benchmark: bool | str = "auto"
    on_non_finite: str = "stop"


_ALLOWED: dict[str, tuple[Any, ...]] = {
    "batched_data": _AUTO_BOOL,
    "channels_last": _AUTO_BOOL,
    "data_on_device": _AUTO_BOOL,
    "amp": ("auto", "bf16", "fp16", False),
    "compile": (True, False),
    "cudnn_benchmark": _AUTO_BOOL,
    "on_non_finite": ("stop", "skip"),
}


def parse_runtime(cfg: Any, key: str = "runtime") -> RuntimeOptions:
    """Reads the ``runtime`` dict (missing keys take their defaults).

    Raises:
        ConfigError: an unknown key or a value outside its choices, naming ``runtime.<key>``.
    """
    block = cfg.get(key) if hasattr(cfg, "get") else None
    if block is None:
        return RuntimeOptions()
    if not hasattr(block, "items"):
        raise ConfigError(f"{key}: expected a dict, got {block!r}")
    names = {f.name for f in fields(RuntimeOptions)}
    values = {}
    for name, value in block.items():
        if name not in names:
            raise ConfigError(f"{key}.{name}: unknown key; valid keys are {sorted(names)}")
        allowed = _ALLOWED[name]
        if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
            raise ConfigError(f"{key}.{name}: expected one of {list(allowed)}, got {value!r}")
        values[name] = value
    return RuntimeOptions(**values)


def runtime_plugins(
    options: RuntimeOptions,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
    model: torch.nn.Module | None = None,
) -> list:
    """The plugins the options imply, to put after the configured ones; also sets the backend
    flags (``cudnn.benchmark``) and compiles ``model`` when ``runtime.compile`` asks for it.

    Args:
        options: the parsed ``runtime`` block.
        seed: the run seed (data order and augmentation derive from it).
        device: the strategy's device.
        log: receives one-line notes about the choices made.
        model: the model to compile (``runtime.compile``).
    """
    from avalanche_ext.accelerate import (  # noqa: PLC0415
        MixedPrecisionPlugin,
        amp_dtype,
        set_cudnn_benchmark,
    )
    from avalanche_ext.data.batched import BatchedDataPlugin  # noqa: PLC0415

    say = log or (lambda _msg: None)
    plugins: list = []
    if device.type == "cuda":
        set_cudnn_benchmark(options.cudnn_benchmark, device)
    dtype = amp_dtype(options.amp, device)
    if dtype is not None:
        plugins.append(MixedPrecisionPlugin(dtype, device.type))
        scaler = " + GradScaler" if dtype == torch.float16 else ""
        say(f"mixed precision: autocast {str(dtype).replace('torch.', '')}{scaler}")
    if options.batched_data is not False:
        plugins.append(
            BatchedDataPlugin(
                seed=seed,
                channels_last=options.channels_last,
                data_on_device=options.data_on_device,
                log=log,
            )
        )
    if options.compile and model is not None:
        from avalanche_ext.accelerate import compile_model  # noqa: PLC0415

        compile_model(model)
        say("torch.compile: backbone compiled in place")
    return plugins


def resolve_device(device: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA without it is a user error.

    Raises:
        ConfigError: CUDA requested but unavailable, or an unknown device string.
    """
    name = (device or "cpu").strip()
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"--device {name}: expected cpu, cuda or cuda:N ({err})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {name}: expected cpu, cuda or cuda:N")
    return dev


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and torch's generators (torch seeds CUDA too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
