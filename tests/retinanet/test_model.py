"""RetinaNet's size and pieces on `meta`, its focal loss against the published rule, and the backbone file."""
import math

import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops import sigmoid_focal_loss
from torchvision.ops.misc import FrozenBatchNorm2d

from retinanet.model import BackboneError, RetinaNetShape, build_retinanet, load_backbone


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def test_full_model_on_meta_has_the_architectures_parameter_count():
    with torch.device("meta"):
        model = build_retinanet()
        resnext = torchvision.models.resnext50_32x4d()
    body = sum(p.numel() for n, p in resnext.named_parameters() if not n.startswith("fc.") and "bn" not in n
               and "downsample.1" not in n)  # FrozenBatchNorm2d keeps BN as buffers, not parameters
    fpn = sum(conv(c, 256, 1) for c in (512, 1024, 2048)) + 3 * conv(256, 256, 3) + 2 * conv(256, 256, 3)  # + P6, P7
    heads = 2 * 4 * conv(256, 256, 3) + conv(256, 9 * 264, 3) + conv(256, 9 * 4, 3)
    assert sum(p.numel() for p in model.parameters()) == body + fpn + heads == 37_060_652
    frozen = conv(3, 64, 7, bias=False) + sum(p.numel() for n, p in resnext.layer1.named_parameters()
                                              if "bn" not in n and "downsample.1" not in n)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 37_060_652 - frozen == 36_849_004


def test_debug_model_is_the_same_detector_on_resnet18_with_64_channel_fpn_and_heads():
    with torch.device("meta"):
        model = build_retinanet(RetinaNetShape.debug(), 128)
        resnet18 = torchvision.models.resnet18()
    body = sum(p.numel() for n, p in resnet18.named_parameters() if not n.startswith("fc.") and "bn" not in n
               and "downsample.1" not in n)
    fpn = sum(conv(c, 64, 1) for c in (128, 256, 512)) + 3 * conv(64, 64, 3) + 2 * conv(64, 64, 3)
    heads = 2 * 4 * conv(64, 64, 3) + conv(64, 9 * 264, 3) + conv(64, 9 * 4, 3)
    assert sum(p.numel() for p in model.parameters()) == body + fpn + heads
    assert model.head.classification_head.num_classes == 264 and model.anchor_generator.num_anchors_per_location() \
        == [9] * 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_backbone_uses_frozen_batchnorm_and_trains_layer2_to_4_only():
    with torch.device("meta"):
        model = build_retinanet()
    body = model.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53
    trained = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trained == {"layer2", "layer3", "layer4"}
    assert list(model.backbone.fpn.extra_blocks.named_children())[0][0] == "p6"


def test_classification_prior_anchors_and_thresholds_are_the_references():
    model = build_retinanet(RetinaNetShape.debug(), 128)
    bias = model.head.classification_head.cls_logits.bias
    assert torch.allclose(bias, torch.full_like(bias, -math.log((1 - 0.01) / 0.01)))  # -4.595
    assert model.anchor_generator.num_anchors_per_location() == [9] * 5
    assert model.anchor_generator.sizes[0] == (32, 40, 50) and model.anchor_generator.sizes[-1] == (512, 645, 812)
    assert (model.proposal_matcher.high_threshold, model.proposal_matcher.low_threshold) == (0.5, 0.4)
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == \
        (0.05, 0.5, 300, 1000)
    assert model.transform.fixed_size == (128, 128)


def test_focal_loss_matches_the_published_rule_on_a_hand_made_case():
    torch.manual_seed(0)
    head = build_retinanet(RetinaNetShape.debug(), 128).head.classification_head
    logits = torch.randn(1, 5, 264)
    matched = torch.tensor([[2, -1, -2, 0, -1]])  # anchors: fg (gt 2), bg, ignored, fg (gt 0), bg
    targets = [{"labels": torch.tensor([7, 3, 11])}]
    loss = head.compute_loss(targets, {"cls_logits": logits}, list(matched))
    onehot = torch.zeros(5, 264)
    onehot[0, 11], onehot[3, 7] = 1.0, 1.0
    keep = torch.tensor([0, 1, 3, 4])  # between-threshold anchors (-2) count for nothing
    p = torch.sigmoid(logits[0, keep])
    p_t = p * onehot[keep] + (1 - p) * (1 - onehot[keep])
    alpha_t = 0.25 * onehot[keep] + 0.75 * (1 - onehot[keep])
    by_hand = (-alpha_t * (1 - p_t) ** 2 * torch.log(p_t)).sum() / 2  # / number of foreground anchors
    torch.testing.assert_close(loss, by_hand)
    torch.testing.assert_close(loss, sigmoid_focal_loss(logits[0, keep], onehot[keep], reduction="sum") / 2)


def test_backbone_file_in_torchvisions_layout_loads_and_bad_files_are_named(tmp_path):
    model = build_retinanet(RetinaNetShape.debug(), 128)
    weights = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        weights.layer3[0].bn1.running_mean.fill_(0.5)
    good = tmp_path / "resnet18.pth"
    torch.save(weights.state_dict(), good)
    load_backbone(model, good)
    assert torch.equal(model.backbone.body.layer3[0].bn1.running_mean, torch.full((256,), 0.5))
    assert torch.equal(model.backbone.body.conv1.weight, weights.conv1.weight)
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(model, tmp_path / "nope.pth")
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(BackboneError, match=r"resnet34\.pth: unexpected key 'layer1\.2"):
        load_backbone(model, wrong)
    cut = {k: v for k, v in weights.state_dict().items() if k != "layer4.1.conv2.weight"}
    torch.save(cut, tmp_path / "cut.pth")
    with pytest.raises(BackboneError, match="missing backbone key 'layer4.1.conv2.weight'"):
        load_backbone(model, tmp_path / "cut.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="junk.pth: not a readable state dict"):
        load_backbone(model, tmp_path / "junk.pth")
