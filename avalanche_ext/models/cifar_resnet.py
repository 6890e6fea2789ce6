"""The CIFAR ResNets of He et al. 2016 (ResNet-20/32/44/56/110), the standard long-tail CIFAR backbone.

Three stages of 16/32/64 channels on 32x32 inputs; ResNet-32 has ~0.46 M parameters, ~8x cheaper than
a CIFAR-stem ResNet-18 on CPU. Registered in mmpretrain's model registry as ``CifarResNet``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from avalanche_ext.registry import MODELS

__all__ = ["CifarResNet"]


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes if (stride != 1 or in_planes != planes) else 0
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad:  # option A of the paper: subsample and zero-pad channels, no parameters
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


@MODELS.register_module()
class CifarResNet(BaseModule):
    """CIFAR ResNet backbone; returns a one-element tuple of the last feature map (OpenMMLab style).

    Args:
        depth: 6n+2 layers: 20, 32, 44, 56 or 110.
        in_channels: input channels.
        base_channels: channels of the first stage (16 in the paper); the stages have 1x, 2x, 4x.
        init_cfg: mmengine init config; default Kaiming for convs.
    """

    def __init__(
        self, depth: int = 32, in_channels: int = 3, base_channels: int = 16, init_cfg=None
    ):
        super().__init__(init_cfg=init_cfg)
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.out_channels = base_channels * 4
        self.conv1 = nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        layers, in_planes = [], base_channels
        for stage, planes in enumerate((base_channels, base_channels * 2, base_channels * 4)):
            blocks = []
            for i in range(n):
                blocks.append(_BasicBlock(in_planes, planes, 2 if (stage > 0 and i == 0) else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        if init_cfg is None:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return (x,)
