"""ResNet-50 v1.5: torchvision's model (stride 2 on the 3x3 convolution), 1000 classes."""
from __future__ import annotations

import torch.nn as nn
import torchvision


def build_resnet50(num_classes: int = 1000) -> nn.Module:
    # zero_init_residual: the last BN of each block starts at gamma=0, so every
    # residual block starts as identity; standard for large-batch LARS training.
    return torchvision.models.resnet50(weights=None, num_classes=num_classes,
                                       zero_init_residual=True)
