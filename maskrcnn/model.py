"""Mask R-CNN with a ResNet-50 FPN backbone, as MLPerf fixes it (the reference is maskrcnn-benchmark's R-50-FPN).

    image -> shorter side 800 (longer at most 1333), ImageNet mean/std, batch padded to a multiple of 32
      -> ResNet-50 (FrozenBatchNorm2d; conv1 and layer1 frozen, layer2-4 trained)
      -> FPN on layer1-4 (P2-P5, 256 channels) + P6 (max pool of P5)
      -> RPN: 3x3 conv + objectness / box deltas for 3 anchors per place (32, 64, 128, 256, 512 px at P2-P6,
         ratios 0.5/1/2); 2000 proposals per level before NMS 0.7; NUM_IMAGE_CANDIDATES after it
      -> box head: RoIAlign 7x7 (sampling 2) -> 2 x FC 1024 -> 81 class scores + 81 x 4 box deltas
      -> mask head: RoIAlign 14x14 -> 4 x (3x3 conv 256 + ReLU) -> 2x2 deconv -> 81 masks of 28x28
    inference: score > 0.05, NMS 0.5 per class, 100 detections per image, masks pasted into the image

It is torchvision's `MaskRCNN` built from the explicit pieces — not
`maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`, which silently
swaps FrozenBatchNorm2d for trainable BatchNorm and trains all five stages
(81 classes: 44,400,693 parameters, all trainable, instead of 44,347,573 with
44,125,173 trainable; 44,454,513 with its default 91). torchvision's defaults are the
reference's (RPN 256 anchors per image at 0.5 positive, IoU 0.7/0.3, smooth
L1 beta 1/9; 512 RoIs per image at 0.25 positive, IoU 0.5; box coder weights
10/10/5/5) but one: the RoI box loss is smooth L1 with beta 1, as
maskrcnn-benchmark's (`ReferenceRoIHeads`; torchvision uses 1/9).
NUM_IMAGE_CANDIDATES counts over the local batch by default, as NVIDIA's
1-node config (`FPN_POST_NMS_TOP_N_PER_IMAGE False`, `BatchCandidatesRPN`),
or per image. `debug` shapes keep the code and narrow the network for CPU runs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection import roi_heads as torchvision_roi_heads
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from common import detection
from common.detection import BackboneError  # noqa: F401  (raised by load_backbone)
from maskrcnn.config import RULES
from maskrcnn.roi_align import SeparableMultiScaleRoIAlign


@dataclass(frozen=True)
class MaskRCNNShape:
    backbone: str = "resnet50"  # a torchvision ResNet name
    trainable_layers: int = 3  # layer2, layer3, layer4 (conv1 and layer1 frozen, as the reference)
    num_classes: int = RULES.num_classes
    fpn_channels: int = 256  # FPN levels, RPN and RoI features
    representation: int = 1024  # the box head's two FC layers
    mask_channels: int = 256  # the mask head's four convolutions and its deconvolution

    @classmethod
    def debug(cls) -> "MaskRCNNShape":
        """The CPU smoke run's model: the same detector, ResNet-18 under a 64-channel FPN and narrower heads."""
        return cls(backbone="resnet18", fpn_channels=64, representation=256, mask_channels=64)


class BatchCandidatesRPN(RegionProposalNetwork):
    """An RPN whose training proposals after NMS are the top N over the whole batch, not N per image.

    maskrcnn-benchmark's `FPN_POST_NMS_TOP_N_PER_IMAGE False` (NVIDIA's 1-node
    config: 12000 over a batch of 12): every image keeps up to N after its own
    NMS, then the N highest objectness scores of the batch are kept. At
    inference the count is per image, as in the reference.
    """

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        boxes, scores = super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        if not self.training:
            return boxes, scores
        sizes = [len(s) for s in scores]
        everything = torch.cat(scores)
        if len(everything) <= self.post_nms_top_n():
            return boxes, scores
        keep = torch.zeros_like(everything, dtype=torch.bool)
        keep[everything.topk(self.post_nms_top_n()).indices] = True
        kept = keep.split(sizes)
        return [b[k] for b, k in zip(boxes, kept)], [s[k] for s, k in zip(scores, kept)]


class ImageSeededSampler(BalancedPositiveNegativeSampler):
    """The RPN's and RoI heads' positive/negative sampling, each image drawn from a generator of its own.

    torchvision draws every image's anchors and RoIs from the global RNG, so
    what an image samples depends on the images before it in the batch and
    on the batch size. With `seeds` set (one int per image of the next
    forward, by `seed_sampling`), an image samples the same anchors and RoIs
    from the same candidates however the global batch is split across ranks
    (its RoI candidates are its own with CANDIDATES_PER_IMAGE=1; over the
    batch, `BatchCandidatesRPN`, they depend on the rank's other images);
    with `seeds` None, the global RNG as torchvision does. The counts are the
    reference's (BATCH_SIZE_PER_IMAGE, POSITIVE_FRACTION).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float, salt: int):
        super().__init__(batch_size_per_image, positive_fraction)
        self.salt = salt  # the RPN and the RoI heads draw differently for the same image
        self.seeds: list[int] | None = None

    def __call__(self, matched_idxs):
        if self.seeds is None:
            return super().__call__(matched_idxs)
        if len(self.seeds) != len(matched_idxs):
            raise ValueError(f"{len(self.seeds)} sampling seeds for {len(matched_idxs)} images")
        positives, negatives = [], []
        for matched, seed in zip(matched_idxs, self.seeds):
            positive, negative = torch.where(matched >= 1)[0], torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            generator = torch.Generator(device=matched.device).manual_seed(seed * 2 + self.salt)
            draw = lambda n: torch.randperm(n, device=matched.device, generator=generator)  # noqa: E731
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[draw(positive.numel())[:num_pos]]] = 1
            neg_mask[negative[draw(negative.numel())[:num_neg]]] = 1
            positives.append(pos_mask)
            negatives.append(neg_mask)
        return positives, negatives


def reference_fastrcnn_loss(class_logits, box_regression, labels, regression_targets):
    """The RoI heads' loss as maskrcnn-benchmark computes it: cross entropy over the sampled RoIs, and smooth L1
    with beta 1 (torchvision's `fastrcnn_loss` uses 1/9, the RPN's) over the positives' class-specific boxes,
    summed and divided by the number of sampled RoIs."""
    labels = torch.cat(labels, dim=0)
    regression_targets = torch.cat(regression_targets, dim=0)
    classification = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    boxes = box_regression.reshape(len(class_logits), box_regression.size(-1) // 4, 4)
    box = F.smooth_l1_loss(boxes[positive, labels[positive]], regression_targets[positive], beta=1.0,
                           reduction="sum")
    return classification, box / labels.numel()


class ReferenceRoIHeads(torchvision_roi_heads.RoIHeads):
    """torchvision's RoI heads with the reference's box loss (`reference_fastrcnn_loss`).

    `RoIHeads.forward` calls the module-level `fastrcnn_loss`; this forward
    puts the reference's in its place for the duration of the call only.
    """

    def forward(self, *args, **kwargs):
        torchvision_loss = torchvision_roi_heads.fastrcnn_loss
        torchvision_roi_heads.fastrcnn_loss = reference_fastrcnn_loss
        try:
            return super().forward(*args, **kwargs)
        finally:
            torchvision_roi_heads.fastrcnn_loss = torchvision_loss


def seed_sampling(model: MaskRCNN, keys: list[tuple[int, ...]]) -> None:
    """Seed the next training forward's sampling per image; `keys` (e.g. (run seed, step, image id)) one per image."""
    seeds = [int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=7).digest(), "little") for key in keys]
    model.rpn.fg_bg_sampler.seeds = seeds
    model.roi_heads.fg_bg_sampler.seeds = seeds


def build_maskrcnn(shape: MaskRCNNShape = MaskRCNNShape(), *, min_size: int = RULES.min_size,
                   max_size: int = RULES.max_size, num_image_candidates: int = 2000,
                   candidates_per_image: bool = True, roi_align: str = "torchvision") -> MaskRCNN:
    backbone = resnet_fpn_backbone(backbone_name=shape.backbone, weights=None, norm_layer=FrozenBatchNorm2d,
                                   trainable_layers=shape.trainable_layers)
    if shape.fpn_channels != backbone.out_channels:  # the debug shape: a narrower FPN, and so narrower heads
        backbone.fpn = FeaturePyramidNetwork([block[0].in_channels for block in backbone.fpn.inner_blocks],
                                             shape.fpn_channels, extra_blocks=LastLevelMaxPool())
        backbone.out_channels = shape.fpn_channels
    channels = shape.fpn_channels
    anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    model = MaskRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        rpn_anchor_generator=anchors, rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=num_image_candidates, rpn_post_nms_top_n_test=1000,
        box_head=TwoMLPHead(channels * 7 * 7, shape.representation),
        box_predictor=FastRCNNPredictor(shape.representation, shape.num_classes),
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
        mask_head=MaskRCNNHeads(channels, (shape.mask_channels,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(shape.mask_channels, shape.mask_channels, shape.num_classes))
    # MaskRCNN builds its RPN and RoI heads itself; these subclasses change behaviour and add no state.
    model.roi_heads.__class__ = ReferenceRoIHeads
    if not candidates_per_image:
        model.rpn.__class__ = BatchCandidatesRPN
    if roi_align == "separable":  # the same pooling as two matmuls per image (a CPU fast path)
        for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
            pool.__class__ = SeparableMultiScaleRoIAlign
    elif roi_align != "torchvision":
        raise ValueError(f"roi_align {roi_align!r}: expected torchvision or separable")
    detection.float32_box_math(model.rpn.anchor_generator, model.rpn.box_coder, model.roi_heads.box_coder)
    for owner, salt in ((model.rpn, 0), (model.roi_heads, 1)):
        sampler = owner.fg_bg_sampler
        owner.fg_bg_sampler = ImageSeededSampler(sampler.batch_size_per_image, sampler.positive_fraction, salt)
    return model


def loss(model: MaskRCNN, images: list[torch.Tensor], targets: list[dict]) -> torch.Tensor:
    """RPN objectness + box, RoI classification + box, mask losses, summed (weights 1, as the reference)."""
    return sum(model(images, targets).values())


def load_backbone(model: MaskRCNN, path: Path) -> None:
    """ImageNet weights in torchvision's layout (`resnet50-0676ba61.pth`) into the backbone body.

    Every key and shape is checked (`common.detection.load_backbone`); a bad file is a `BackboneError`.
    """
    detection.load_backbone(model.backbone.body, path)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
