"""What a strategy or plugin class can do, declared on the class (as Avalanche's
``supports_distributed`` and mammoth's ``COMPATIBILITY``), never as a list of names in the core.

Our classes declare their own capabilities in their class body. Avalanche's classes cannot be
edited, so theirs are set on them here, once, when this module is imported; the checkpointer, the
registry and the probe read nothing but the attributes (:func:`declared`).

Capabilities (class attributes):

* ``stateless`` (plugin, bool): nothing for a checkpoint to hold; a resumed run may add or drop it.
  Avalanche's evaluator and clock say so too: the checkpointer saves them itself.
* ``resumable`` (strategy, bool): its only state is the model, the optimizer and the plugins (all
  checkpointed). Any other Avalanche strategy keeps state of its own (a buffer, importance
  weights, the accumulated dataset) without a checkpoint form, so ``--resume`` refuses it.
* ``needs_other_model`` (strategy or plugin, str): the model it needs that a config's classifier
  cannot give; resolving it from a config fails with this reason.
* ``probe_experience_hooks`` (plugin, tuple of hook names): experience hooks the plugin's loss hooks
  depend on, read to touch only the plugin and the model, so the config probe runs them on copies.

A capability is the class's own: a subclass declares it again (it may add state, or need another
model), except ``probe_experience_hooks``, which subclasses inherit.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["declared"]

_PLUGINS = "avalanche.training.plugins"
_STRATEGIES = "avalanche.training"
# Avalanche's classes: {module: {class name: {capability: value}}}.
_AVALANCHE: dict[str, dict[str, dict[str, Any]]] = {
    _PLUGINS: {
        "EvaluationPlugin": {"stateless": True},
        "LRSchedulerPlugin": {
            "stateless": True,
            "needs_other_model": "a built scheduler object (use cl_strategy.scheduler)",
        },
        "EarlyStoppingPlugin": {"stateless": True},
        "SynapticIntelligencePlugin": {"probe_experience_hooks": ("before_training_exp",)},
        "CoPEPlugin": {"needs_other_model": "an embedding model with prototypes"},
        "GenerativeReplayPlugin": {"needs_other_model": "a generator model"},
        "TrainGeneratorAfterExpPlugin": {"needs_other_model": "a generator model"},
        "CWRStarPlugin": {"needs_other_model": "the model object and a layer name"},
    },
    "avalanche.training.plugins.clock": {"Clock": {"stateless": True}},
    "avalanche.training.templates.base_sgd": {"PeriodicEval": {"stateless": True}},
    "avalanche.training.supervised": {
        "Naive": {"resumable": True},
        "FromScratchTraining": {"resumable": True},
    },
    _STRATEGIES: {
        "PNNStrategy": {"needs_other_model": "a progressive neural network (PNN) model"},
        "AR1": {"needs_other_model": "its own MobileNet with latent replay layers"},
        "ICaRL": {"needs_other_model": "a separate feature extractor and NCM classifier"},
        "StreamingLDA": {"needs_other_model": "a frozen feature extractor and an SLDA model"},
        "SCR": {"needs_other_model": "a contrastive (projection-head) model"},
        "ER_AML": {"needs_other_model": "a separate feature extractor"},
        "CoPE": {"needs_other_model": "an embedding model with prototypes"},
        "PackNet": {"needs_other_model": "a PackNetModel"},
        "ExpertGateStrategy": {"needs_other_model": "its own expert-gate model"},
        "LearningToPrompt": {"needs_other_model": "a pretrained vision transformer"},
        "GenerativeReplay": {"needs_other_model": "a generator model"},
        "VAETraining": {"needs_other_model": "a variational autoencoder"},
        "AETraining": {"needs_other_model": "an autoencoder"},
        "CWRStar": {"needs_other_model": "the name of a layer inside a fixed-size classifier"},
        "FeatureReplay": {
            "needs_other_model": "a split model (frozen feature extractor + last layer)"
        },
    },
    "avalanche.training.plugins.update_ncm": {
        "CurrentDataNCMUpdate": {"needs_other_model": "an NCM classifier"},
        "MemoryNCMUpdate": {"needs_other_model": "an NCM classifier"},
        "NCMOracle": {"needs_other_model": "an NCM classifier"},
    },
    "avalanche.training.plugins.update_fecam": {
        "CurrentDataFeCAMUpdate": {"needs_other_model": "a FeCAM classifier"},
        "MemoryFeCAMUpdate": {"needs_other_model": "a FeCAM classifier"},
        "FeCAMOracle": {"needs_other_model": "a FeCAM classifier"},
    },
}
_INHERITED = ("probe_experience_hooks",)


def _declare_avalanche() -> None:
    for module_name, classes in _AVALANCHE.items():
        module = importlib.import_module(module_name)
        for class_name, capabilities in classes.items():
            cls = getattr(module, class_name)  # a renamed class fails loudly here
            for name, value in capabilities.items():
                setattr(cls, name, value)


def declared(obj: Any, name: str, default: Any = None) -> Any:
    """The capability ``name`` that ``obj``'s class (or ``obj``, a class) declares.

    Args:
        obj: a strategy or plugin, or its class.
        name: the capability (see the module docstring).
        default: what an undeclared capability means.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    if name in _INHERITED:
        return getattr(cls, name, default)
    return vars(cls).get(name, default)


_declare_avalanche()
