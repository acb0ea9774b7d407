"""The MLPerf 3D U-Net and its loss and score (the reference's image_segmentation/pytorch, v3.0).

Input block, four stride-2 downsampling blocks and a stride-2 bottleneck, five
upsampling blocks (a 2^3 stride-2 transposed convolution, concatenation with the
skip, two convolutions), a 1^3 output convolution. Every convolution of a block
is 3^3 without bias, followed by affine InstanceNorm and ReLU; the transposed
convolutions and the output convolution have biases and nothing after them.
A patch side must be a multiple of 2^stages and leave the bottleneck more than
one voxel (InstanceNorm needs two): 64, 96, 128, ... for the full network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from unet3d.config import RULES


@dataclass(frozen=True)
class UNetShape:
    filters: tuple = (32, 64, 128, 256, 320)  # input block, then each downsampling stage; bottleneck keeps the last

    @classmethod
    def debug(cls) -> "UNetShape":
        """The same code a quarter as wide and two stages shallower (16^3 patches), for CPU runs."""
        return cls(filters=(8, 16, 32))

    @property
    def divisor(self) -> int:
        """Patch sides must be multiples of this: one halving per downsampling stage and the bottleneck."""
        return 2 ** len(self.filters)


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.InstanceNorm3d(out_channels, affine=True), nn.ReLU(inplace=True))


class DownBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2):
        super().__init__(conv_block(in_channels, out_channels, stride), conv_block(out_channels, out_channels))


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.upsample = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        self.convs = nn.Sequential(conv_block(2 * out_channels, out_channels), conv_block(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat((self.upsample(x), skip), dim=1))


class UNet3D(nn.Module):
    def __init__(self, shape: UNetShape = UNetShape(), in_channels: int = RULES.in_channels,
                 num_classes: int = RULES.num_classes):
        super().__init__()
        f = shape.filters
        self.input_block = DownBlock(in_channels, f[0], stride=1)
        self.downsample = nn.ModuleList(DownBlock(i, o) for i, o in zip(f[:-1], f[1:]))
        self.bottleneck = DownBlock(f[-1], f[-1])
        widths = (f[-1],) + tuple(reversed(f))  # bottleneck -> deepest skip -> ... -> input block's width
        self.upsample = nn.ModuleList(UpBlock(i, o) for i, o in zip(widths[:-1], widths[1:]))
        self.output = nn.Conv3d(f[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_block(x)
        skips = [x]
        for block in self.downsample:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(x)
        for block, skip in zip(self.upsample, reversed(skips)):
            x = block(x, skip)
        # The 1^3 output convolution in float32 even under bf16 autocast (a few FLOPs): the evaluation's argmax
        # and the loss's softmax see logits at full precision.
        with torch.autocast(x.device.type, enabled=False):
            return self.output(x.float())


def build_unet3d(shape: UNetShape = UNetShape()) -> UNet3D:
    return UNet3D(shape)


def one_hot(label: torch.Tensor, num_classes: int = RULES.num_classes) -> torch.Tensor:
    """(N, 1, D, H, W) integer labels -> (N, C, D, H, W) float one-hot."""
    return F.one_hot(label[:, 0].long(), num_classes).permute(0, 4, 1, 2, 3).float()


def dice(prediction: torch.Tensor, target: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """Per sample and foreground class (background excluded, as the reference): (N, C - 1) Dice of
    (N, C, D, H, W) class probabilities (or one-hot predictions) against one-hot targets."""
    prediction, target = prediction[:, 1:], target[:, 1:]
    axes = tuple(range(2, prediction.dim()))
    intersection = (prediction * target).sum(axes)
    return (2 * intersection + smooth) / (prediction.sum(axes) + target.sum(axes) + smooth)


def dice_ce_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The reference's training loss: the mean of (1 - soft Dice) and cross-entropy, each averaged.

    Computed in float32: under bf16 autocast the softmax sums over 128^3 voxels would round.
    """
    logits = logits.float()
    cross_entropy = F.cross_entropy(logits, label[:, 0].long())
    soft_dice = dice(torch.softmax(logits, dim=1), one_hot(label, logits.shape[1]))
    return ((1 - soft_dice).mean() + cross_entropy) / 2


def dice_scores(logits: torch.Tensor, label: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """The evaluation score of each case: (N, 2) hard Dice (kidney, tumor) of the argmax prediction — `dice` of
    its one-hot, counted class by class without building one-hot volumes (a whole CT volume at a time)."""
    prediction, label = logits.argmax(dim=1), label[:, 0].long()
    scores = []
    for cls in range(1, logits.shape[1]):
        p, t = prediction == cls, label == cls
        intersection = (p & t).flatten(1).sum(1).double()
        scores.append((2 * intersection + smooth) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + smooth))
    return torch.stack(scores, dim=1).float()
