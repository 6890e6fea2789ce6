"""An OpenMMLab classification dict (backbone / neck / head) as an Avalanche-ready ``nn.Module``.

``forward(x)`` returns logits, as Avalanche strategies expect; the pooled features of the last batch
stay in ``last_features`` (clustering and feature distillation read them without a second forward);
the head grows to new classes keeping the old rows (class-incremental learning, novel-class discovery).
"""

from __future__ import annotations

import torch
from avalanche.models import DynamicModule
from avalanche.models.base_model import BaseModel
from torch import nn

from avalanche_ext.errors import ConfigError
from avalanche_ext.ncd_state import MASKED_LOGIT
from avalanche_ext.registry import MODELS

__all__ = ["MMClassifier", "align_new_rows", "set_batchnorm_mode"]


@torch.no_grad()
def align_new_rows(layer: nn.Linear, num_old: int, num_new: int | None = None) -> float:
    """Weight aligning (Zhao et al., CVPR 2020): rescales the new rows so their mean norm equals the
    old rows' mean norm, removing the classifier's bias towards the classes it was trained on last.

    Args:
        layer (nn.Linear): the classifier (rows = classes).
        num_old (int): rows ``0 .. num_old-1`` are the old classes.
        num_new (int | None): rows ``num_old .. num_old+num_new-1`` are the new ones (None: all the
            rest; rows after them, e.g. grown only to evaluate future classes, are left alone).

    Returns:
        float: the factor applied to the new rows (1.0 when there is nothing to align).
    """
    norms = layer.weight.norm(dim=1)
    end = norms.numel() if num_new is None else min(norms.numel(), num_old + num_new)
    if num_old <= 0 or num_old >= end:
        return 1.0
    factor = float(norms[:num_old].mean() / norms[num_old:end].mean().clamp_min(1e-12))
    layer.weight[num_old:end] *= factor
    if layer.bias is not None:
        layer.bias[num_old:end] *= factor
    return factor


def set_batchnorm_mode(model: nn.Module, training: bool) -> None:
    """Puts every BatchNorm layer of ``model`` in train (re-estimate statistics) or eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(training)


def _normal_std(head_cfg: dict) -> float | None:
    init = head_cfg.get("init_cfg") if isinstance(head_cfg, dict) else None
    if isinstance(init, dict) and init.get("type") == "Normal":
        return float(init.get("std", 0.01))
    return None


@MODELS.register_module()
class MMClassifier(DynamicModule, BaseModel):
    """Backbone + neck + linear head built from mmpretrain dicts, with a growable classifier.

    Args:
        backbone: mmpretrain backbone dict (e.g. ``dict(type='ResNet_CIFAR', depth=18)`` or
            ``dict(type='CifarResNet', depth=32)``), or None when the inputs are features already.
        neck: neck dict (e.g. ``dict(type='GlobalAveragePooling')``) or None.
        head: a linear head dict (``LinearClsHead`` or a subclass: it must own an ``fc`` layer),
            with ``num_classes`` and ``in_channels``.
        auto_grow: grow the head when an experience brings labels beyond it (Avalanche's model
            adaptation calls :meth:`adaptation`, for training and evaluation experiences alike, as
            Avalanche's ``IncrementalClassifier`` does).
        mask_unseen: in eval mode, give classes the model was never trained on (rows added only to
            evaluate future experiences) the logit ``-1000`` (Avalanche's ``IncrementalClassifier``
            masking), so they are never predicted.
    """

    MASK_VALUE = MASKED_LOGIT

    def __init__(
        self,
        head: dict,
        backbone: dict | None = None,
        neck: dict | None = None,
        auto_grow: bool = True,
        mask_unseen: bool = True,
    ):
        super().__init__()
        # backbone=None: inputs are already features (e.g. CLEAR's precomputed ones): a linear probe.
        self.backbone = MODELS.build(backbone) if backbone else None
        self.neck = MODELS.build(neck) if neck else None
        self.head = MODELS.build(head)
        if not isinstance(getattr(self.head, "fc", None), nn.Linear):
            raise ConfigError(
                f"model.head.type: {head.get('type')!r} has no linear 'fc' layer to grow; "
                "use LinearClsHead (or a subclass)"
            )
        for part in (self.backbone, self.neck, self.head):
            if part is not None and hasattr(part, "init_weights"):
                part.init_weights()
        self._new_row_std = _normal_std(head)
        self.auto_grow = auto_grow
        self.mask_unseen = mask_unseen
        # Rows that have been trained (or were created for training by grow()); the rest are masked.
        self.register_buffer("active", torch.ones(self.head.fc.out_features, dtype=torch.bool))
        self.last_features: torch.Tensor | None = None

    @property
    def classifier(self) -> nn.Linear:
        """The final linear layer (rows = classes)."""
        return self.head.fc

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features

    @property
    def feature_dim(self) -> int:
        return self.head.fc.in_features

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: the input of the final linear layer."""
        feats = self.backbone(x) if self.backbone is not None else (x.flatten(1),)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.head.pre_logits(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.extract_features(x)
        self.last_features = features
        logits = self.head.fc(features)
        if self.mask_unseen and not self.training and not bool(self.active.all()):
            logits = logits.masked_fill(~self.active, self.MASK_VALUE)
        return logits

    def get_features(self, x: torch.Tensor) -> torch.Tensor:
        """Avalanche's ``BaseModel`` feature interface (LFL, feature-based plugins): the pooled
        features, as :meth:`extract_features`."""
        return self.extract_features(x)

    @property
    def features(self) -> torch.Tensor | None:
        """Avalanche's name for the last forward's features (``FeatureDistillationPlugin``)."""
        return self.last_features

    @features.setter
    def features(self, value: torch.Tensor | None) -> None:
        self.last_features = value

    def __getstate__(self) -> dict:
        """Copies and pickles leave out ``last_features``: it is the last forward's activation, a
        non-leaf tensor that ``copy.deepcopy`` refuses (Avalanche's LwF and MIR deep-copy the
        model)."""
        state = self.__dict__.copy()
        state["last_features"] = None
        return state

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"logits", "features"}`` in one forward."""
        logits = self.forward(x)
        return {"logits": logits, "features": self.last_features}

    def backbone_parameters(self):
        """Parameters of everything but the final linear layer."""
        fc = {id(p) for p in self.head.fc.parameters()}
        return [p for p in self.parameters() if id(p) not in fc]

    def head_parameters(self):
        return list(self.head.fc.parameters())

    @torch.no_grad()
    def grow(self, num_classes: int, activate: bool = True) -> bool:
        """Widens the classifier to ``num_classes`` rows, keeping the old rows' weights.

        The new ``fc`` replaces the old one under the same name, so Avalanche's ``update_optimizer``
        swaps it into the optimizer (by parameter name) at the next ``make_optimizer``.

        Args:
            num_classes: the new number of rows (no-op when not larger).
            activate: mark the new rows as trained-on (plugins growing the head for new classes);
                False for rows added only so that a future experience can be evaluated.

        Returns:
            bool: whether the head changed.
        """
        old = self.head.fc
        if activate and num_classes <= old.out_features:
            self.active[:num_classes] = True
        if num_classes <= old.out_features:
            return False
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        new = new.to(device=old.weight.device, dtype=old.weight.dtype)
        if self._new_row_std is not None:
            nn.init.normal_(new.weight, std=self._new_row_std)
            if new.bias is not None:
                nn.init.zeros_(new.bias)
        new.weight[: old.out_features] = old.weight
        if old.bias is not None:
            new.bias[: old.out_features] = old.bias
        self.head.fc = new
        extra = torch.full((num_classes - old.out_features,), activate, dtype=torch.bool)
        self.active = torch.cat([self.active, extra.to(self.active.device)])
        if hasattr(self.head, "num_classes"):
            self.head.num_classes = num_classes
        return True

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Loads a state dict, first resizing the classifier to the saved number of rows.

        The head's width is state here (it grows during a run), so a snapshot taken before the head
        grew (e.g. a distillation teacher saved in a checkpoint) loads into a copy of the grown
        model; rows are added or removed, the loaded weights then fill them.
        """
        weight = state_dict.get("head.fc.weight")
        fc = self.head.fc
        if (
            isinstance(weight, torch.Tensor)
            and weight.dim() == 2
            and weight.shape[1] == fc.in_features
            and weight.shape[0] != fc.out_features
        ):
            # skip_init: no random initialisation (the weights are loaded next), so loading never
            # draws from the RNG (a resumed run must draw the numbers an uninterrupted one does).
            new = torch.nn.utils.skip_init(
                nn.Linear,
                fc.in_features,
                weight.shape[0],
                bias=fc.bias is not None,
                device=fc.weight.device,
                dtype=fc.weight.dtype,
            )
            new.requires_grad_(fc.weight.requires_grad)
            self.head.fc = new
            self.active = torch.ones(weight.shape[0], dtype=torch.bool, device=self.active.device)
            if hasattr(self.head, "num_classes"):
                self.head.num_classes = weight.shape[0]
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def adaptation(self, experience) -> None:
        """Grows the head to cover the labels of a TRAINING experience (hidden labels, -1, are
        ignored).

        Evaluation experiences never grow it: evaluating the test stream after the base experience
        would otherwise widen a discovery model to the true number of classes before any
        discovery (a leak of ``k``). The runner pads evaluation logits to the scenario's classes
        with ``MASKED_LOGIT`` instead, which scores the same as masked rows."""
        if not self.auto_grow or not self.training:
            return
        classes = getattr(experience, "classes_in_this_experience", None)
        if classes is None:
            return
        labels = [int(c) for c in classes if int(c) >= 0]
        if not labels:
            return
        self.grow(max(labels) + 1, activate=False)
        if self.training:
            self.active[torch.as_tensor(labels, device=self.active.device)] = True
