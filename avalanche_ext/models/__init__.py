"""Models: the OpenMMLab classifier adapter with a growable head, and extra backbones."""

from avalanche_ext.models.cifar_resnet import CifarResNet
from avalanche_ext.models.classifier import MMClassifier

__all__ = ["CifarResNet", "MMClassifier"]
