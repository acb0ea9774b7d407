"""RetinaNet with a ResNeXt50-32x4d FPN backbone, as the MLPerf reference builds it (single_stage_detector).

    image -> resized to S x S (aspect ratio not kept), ImageNet mean/std
      -> ResNeXt50-32x4d (FrozenBatchNorm2d; conv1 and layer1 frozen, layer2-4 trained)
      -> FPN on layer2-4 (C3-C5, 256 channels) + P6, P7 from P5
      -> per level: 4 x (3x3 conv 256 + ReLU) then 9 anchors x 264 class logits (bias -log(99)), and
         4 x (3x3 conv + ReLU) then 9 x 4 box deltas
    loss: sigmoid focal loss (alpha 0.25, gamma 2) over anchors matched at IoU >= 0.5 (background < 0.4,
    in between ignored) + L1 on the box deltas of the foreground anchors, each / max(1, foreground)
    inference: score > 0.05, top 1000 per level, NMS 0.5, 300 detections per image

It is torchvision's `RetinaNet` built from the explicit pieces — not
`retinanet_resnet50_fpn(weights=None)`, which silently swaps FrozenBatchNorm2d
for trainable BatchNorm — and whose defaults (thresholds, prior, box coder,
L1 box loss, anchors 32-512 x 2^(0, 1/3, 2/3) x ratios 0.5/1/2) are the
reference's. The backbone starts from ImageNet weights in torchvision's
state-dict layout (`load_backbone`). `debug` shapes keep the code and swap
only the backbone for CPU runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from common import detection
from common.detection import BackboneError  # noqa: F401  (raised by load_backbone)
from retinanet.config import RULES


@dataclass(frozen=True)
class RetinaNetShape:
    backbone: str = "resnext50_32x4d"  # a torchvision ResNet name
    trainable_layers: int = 3  # layer2, layer3, layer4 (conv1 and layer1 frozen, as the reference)
    num_classes: int = RULES.num_classes
    fpn_channels: int = 256  # FPN levels and both heads' width

    @classmethod
    def debug(cls) -> "RetinaNetShape":
        """The CPU smoke run's model: the same detector with ResNet-18 under a 64-channel FPN (see the README)."""
        return cls(backbone="resnet18", fpn_channels=64)


def anchor_generator() -> AnchorGenerator:
    """3 scales (2^0, 2^(1/3), 2^(2/3)) x 3 aspect ratios per level, from 32 px at P3 to 512 px at P7."""
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def build_retinanet(shape: RetinaNetShape = RetinaNetShape(), image_size: int = RULES.image_size) -> RetinaNet:
    backbone = resnet_fpn_backbone(backbone_name=shape.backbone, weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=shape.trainable_layers, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    if shape.fpn_channels != backbone.out_channels:  # the debug shape: a narrower FPN, and so narrower heads
        backbone.fpn = FeaturePyramidNetwork([block[0].in_channels for block in backbone.fpn.inner_blocks],
                                             shape.fpn_channels,
                                             extra_blocks=LastLevelP6P7(shape.fpn_channels, shape.fpn_channels))
        backbone.out_channels = shape.fpn_channels
    model = RetinaNet(backbone, shape.num_classes, anchor_generator=anchor_generator(),
                      min_size=image_size, max_size=image_size, fixed_size=(image_size, image_size),
                      score_thresh=0.05, nms_thresh=0.5, detections_per_img=300, topk_candidates=1000,
                      fg_iou_thresh=0.5, bg_iou_thresh=0.4)
    detection.float32_box_math(model.anchor_generator, model.box_coder)  # bf16 would round boxes by 4 px
    return model


def loss(model: RetinaNet, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
    """Focal classification loss + L1 box loss (torchvision's heads compute both, as the reference)."""
    losses = model(images, targets)
    return losses["classification"] + losses["bbox_regression"]


def load_backbone(model: RetinaNet, path: Path) -> None:
    """ImageNet weights in torchvision's layout (`resnext50_32x4d-7cdf4587.pth`) into the backbone body.

    Every key and shape is checked (`common.detection.load_backbone`); a bad file is a `BackboneError`.
    """
    detection.load_backbone(model.backbone.body, path)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
