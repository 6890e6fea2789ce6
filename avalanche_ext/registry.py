"""mmengine registries for every configurable component, with fallback into the libraries we build on.

A ``type`` is looked up in our registry first (modules under ``locations`` are imported on first use,
so a new file with ``@REGISTRY.register_module()`` is all a new component needs), then in the library
that owns that kind of component (Avalanche, torch, torchvision, mmpretrain). Unknown names raise a
:class:`ConfigError` naming the config key and the closest valid names.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

from mmengine.registry import Registry
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from avalanche_ext.capabilities import declared
from avalanche_ext.errors import ConfigError

__all__ = [
    "SCENARIOS",
    "PLUGINS",
    "STRATEGIES",
    "METRICS",
    "LOGGERS",
    "TRANSFORMS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "LOSSES",
    "MODELS",
    "build",
    "resolve_type",
    "import_package_modules",
]


def import_package_modules(package: str) -> None:
    """Imports every module of ``package`` so their ``register_module`` decorators run.

    Errors are not swallowed: a broken plugin file must fail loudly, not vanish from the registry.
    """
    pkg = importlib.import_module(package)
    if not hasattr(pkg, "__path__"):
        return
    for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


SCENARIOS = Registry("scenario", locations=["avalanche_ext.scenarios"])
PLUGINS = Registry("plugin", locations=["avalanche_ext.plugins", "avalanche_ext.strategies"])
STRATEGIES = Registry("strategy", locations=["avalanche_ext.strategies"])
METRICS = Registry("metric", locations=["avalanche_ext.metrics"])
LOGGERS = Registry("logger", locations=["avalanche_ext.loggers"])
TRANSFORMS = Registry("transform", locations=["avalanche_ext.transforms"])
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
LOSSES = Registry("loss", locations=["avalanche_ext.losses"])
# mmpretrain's ImageClassifier builds its backbone/neck/head from mmpretrain's own registry, so our
# backbones (ResNet-32 ...) are registered straight into it; MODELS is that registry.
MODELS = MMPRETRAIN_MODELS

# Where a type that we did not register is looked up, in order (module path, or a Registry).
FALLBACKS: dict[int, list[Any]] = {
    id(SCENARIOS): ["avalanche.benchmarks.classic"],
    id(PLUGINS): ["avalanche.training.plugins"],
    id(STRATEGIES): ["avalanche.training.supervised", "avalanche.training"],
    id(METRICS): ["avalanche.evaluation.metrics"],
    id(LOGGERS): ["avalanche.logging"],
    id(TRANSFORMS): ["torchvision.transforms.v2", "torchvision.transforms"],
    id(OPTIMIZERS): ["torch.optim"],
    id(SCHEDULERS): ["torch.optim.lr_scheduler"],
    id(LOSSES): [MMPRETRAIN_MODELS, "torch.nn"],
}
_LOCAL_PACKAGES = {id(MODELS): ["avalanche_ext.models"]}


def _ensure_imported(registry: Registry) -> None:
    registry.import_from_location()
    for package in getattr(registry, "_locations", []) + _LOCAL_PACKAGES.get(id(registry), []):
        if package not in _imported:
            _imported.add(package)
            import_package_modules(package)


_imported: set[str] = set()


def _public_names(source: Any) -> list[str]:
    if isinstance(source, Registry):
        source.import_from_location()
        return list(source.module_dict)
    module = importlib.import_module(source)
    names = getattr(module, "__all__", None) or dir(module)
    return [n for n in names if not n.startswith("_") and callable(getattr(module, n, None))]


def resolve_type(registry: Registry, name: str, key: str = "type") -> Callable:
    """Finds the class or function called ``name`` for ``registry``.

    Args:
        registry: one of this module's registries.
        name: the ``type`` string from a config dict.
        key: the config key the dict came from, used in the error message.

    Raises:
        ConfigError: the name is neither registered nor found in the fallback libraries.
    """
    _ensure_imported(registry)
    obj = registry.get(name) if name in registry.module_dict else None
    if obj is not None:
        return obj
    candidates = list(registry.module_dict)
    for source in FALLBACKS.get(id(registry), []):
        if isinstance(source, Registry):
            source.import_from_location()
            obj = source.module_dict.get(name)
        else:
            obj = getattr(importlib.import_module(source), name, None)
            obj = obj if callable(obj) else None
        if obj is not None:
            needs = None if isinstance(source, Registry) else declared(obj, "needs_other_model")
            if needs:
                raise ConfigError(
                    f"{key}.type: {name} needs {needs}; it cannot run with "
                    "MMClassifier models from a config"
                )
            return obj
        candidates += _public_names(source)
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"{key}.type: unknown {registry.name} type {name!r}{hint}")


def check_arguments(obj: Callable, kwargs: dict, key: str) -> None:
    """Raises a ConfigError naming ``key`` when ``kwargs`` do not fit ``obj``'s signature."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return
    params = dict(sig.parameters)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if inspect.isclass(obj) and obj.__module__.startswith("avalanche.training"):
        # Avalanche strategies pass **kwargs up their class chain: the valid keys are the union
        for base in obj.__mro__[1:]:
            init = base.__dict__.get("__init__")
            if init is not None and base is not object:
                try:
                    for n, p in inspect.signature(init).parameters.items():
                        params.setdefault(n, p)
                except (TypeError, ValueError):
                    continue
        params = {n: p for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if p.kind in named and n != "self"]
        for name in kwargs:
            if name not in valid:
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {valid}"
                raise ConfigError(
                    f"{key}.{name}: unexpected key for type {getattr(obj, '__name__', obj)!s}{hint}"
                )
    try:
        sig.bind(**kwargs)
    except TypeError as err:
        msg = str(err).replace("argument", "key")
        raise ConfigError(f"{key}: {msg} (for type {getattr(obj, '__name__', obj)!s})") from None


def build(registry: Registry, cfg: dict, key: str = "cfg", **default_args: Any) -> Any:
    """Builds the object a config dict describes.

    Args:
        registry: the registry the ``type`` belongs to.
        cfg: a dict with ``type`` and the constructor's keyword arguments.
        key: the dotted config key of ``cfg``, named in every error.
        **default_args: arguments given by the caller (e.g. ``params=`` for an optimizer); the
            config cannot override them.

    Raises:
        ConfigError: unknown type, missing or unexpected keys.
    """
    if not isinstance(cfg, dict):
        raise ConfigError(f"{key}: expected a dict with a 'type', got {type(cfg).__name__}")
    args = dict(cfg)
    name = args.pop("type", None)
    if name is None:
        raise ConfigError(f"{key}: missing required key 'type'")
    obj = name if callable(name) else resolve_type(registry, str(name), key)
    args.update(default_args)
    check_arguments(obj, args, key)
    try:
        return obj(**args)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise ConfigError(f"{key}: {getattr(obj, '__name__', obj)}: {err}") from err
