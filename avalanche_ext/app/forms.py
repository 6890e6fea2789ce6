"""The Train tab's knobs: which config keys a form may set, filled from the config, with choices
from the registries (losses, imbalance profiles). The page can only set these keys; each value is
converted to the knob's type before it reaches ``--cfg-options``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mmengine.config import Config

from avalanche_ext.errors import ConfigError

__all__ = ["Knob", "cfg_options", "knobs"]

# mmpretrain's losses a classifier config commonly names (the registry holds detection ones too).
_MMPRETRAIN_LOSSES = ("CrossEntropyLoss", "FocalLoss", "LabelSmoothLoss", "SeesawLoss")


@dataclass
class Knob:
    """One form field.

    Args:
        key: the dotted config key it sets.
        label: what the form calls it.
        kind: ``int``, ``float`` or ``choice``.
        value: the config's value.
        choices: the allowed values of a ``choice``.
    """

    key: str
    label: str
    kind: str
    value: Any
    choices: list[str] | None = None


def _get(cfg: dict, dotted: str) -> Any:
    value: Any = cfg
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _loss_names() -> list[str]:
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import avalanche_ext.losses as package  # noqa: PLC0415
    from avalanche_ext.registry import LOSSES  # noqa: PLC0415

    for module in pkgutil.iter_modules(package.__path__):  # each loss module registers itself
        importlib.import_module(f"{package.__name__}.{module.name}")

    return sorted(set(LOSSES.module_dict) | set(_MMPRETRAIN_LOSSES))


def _profiles() -> list[str]:
    from avalanche_ext.datasets.long_tail import IMBALANCE_PROFILES  # noqa: PLC0415

    return sorted(IMBALANCE_PROFILES)


_FIELDS = (
    ("cl_strategy.train_epochs", "epochs", "int", None),
    ("cl_strategy.train_mb_size", "batch size", "int", None),
    ("cl_strategy.optimizer.lr", "learning rate", "float", None),
    ("cl_strategy.optimizer.momentum", "momentum", "float", None),
    ("cl_strategy.optimizer.weight_decay", "weight decay", "float", None),
    ("cl_strategy.loss.type", "loss", "choice", _loss_names),
    ("model.backbone.depth", "model depth", "int", None),
    ("scenario.imbalance_ratio", "imbalance ratio", "float", None),
    ("scenario.imbalance_type", "imbalance type", "choice", _profiles),
)


def knobs(cfg: Config) -> list[Knob]:
    """The knobs this config has (a key it lacks is not offered), plus ``seed`` and
    ``history.test_every`` (the test stream's per-epoch curve)."""
    out = []
    plain = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    for key, label, kind, choices in _FIELDS:
        value = _get(plain, key)
        if value is None or isinstance(value, (list, tuple, dict)):
            continue
        out.append(Knob(key, label, kind, value, choices() if choices else None))
    out.append(Knob("seed", "seed", "int", int(cfg.get("seed", 0) or 0)))
    every = (plain.get("history") or {}).get("test_every", 0)
    out.append(Knob("history.test_every", "test curve every N epochs (0: none)", "int", every))
    return out


def _convert(knob: Knob, raw: Any) -> Any:
    try:
        if knob.kind == "int":
            return int(str(raw).strip())
        if knob.kind == "float":
            return float(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{knob.label}: {raw!r} is not a number") from None
    if str(raw) not in (knob.choices or []):
        raise ConfigError(f"{knob.label}: {raw!r} is not one of the choices")
    return str(raw)


def cfg_options(cfg: Config, values: dict[str, Any]) -> tuple[list[str], int | None]:
    """``--cfg-options`` arguments for the values that differ from the config, and the seed.

    Raises:
        ConfigError: a key the form does not offer, or a value of the wrong type.
    """
    offered = {k.key: k for k in knobs(cfg)}
    args, seed = [], None
    for key, raw in values.items():
        if key not in offered:
            raise ConfigError(f"{key}: not a setting this form offers")
        value = _convert(offered[key], raw)
        if key == "seed":
            seed = value
        elif value != offered[key].value:
            args.append(f"{key}={value}")
    return args, seed


def knob_dicts(cfg: Config) -> list[dict[str, Any]]:
    return [asdict(k) for k in knobs(cfg)]
