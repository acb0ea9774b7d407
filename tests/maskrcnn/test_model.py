"""Mask R-CNN R50-FPN as MLPerf fixes it: the parameter count derived from the pieces, frozen stages, heads."""
import pytest
import torch
import torch.nn as nn
import torchvision
from torchvision.ops.misc import FrozenBatchNorm2d

from maskrcnn.model import BackboneError, BatchCandidatesRPN, MaskRCNNShape, build_maskrcnn, load_backbone


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def fc(cin, cout):
    return cin * cout + cout


def test_full_model_on_meta_has_the_parameter_count_derived_from_its_parts():
    with torch.device("meta"):
        model = build_maskrcnn()
        resnet50 = torchvision.models.resnet50(weights=None)
    body = sum(p.numel() for n, p in resnet50.named_parameters() if not n.startswith("fc.") and "bn" not in n
               and "downsample.1" not in n)  # FrozenBatchNorm2d holds buffers, not parameters
    fpn = sum(conv(c, 256, 1) + conv(256, 256, 3) for c in (256, 512, 1024, 2048))
    rpn = conv(256, 256, 3) + conv(256, 3, 1) + conv(256, 3 * 4, 1)  # 3 anchors per place
    box = fc(256 * 7 * 7, 1024) + fc(1024, 1024) + fc(1024, 81) + fc(1024, 81 * 4)
    mask = 4 * conv(256, 256, 3) + (256 * 256 * 2 * 2 + 256) + conv(256, 81, 1)  # 4 convs, 2x2 deconv, logits
    total = sum(p.numel() for p in model.parameters())
    assert total == body + fpn + rpn + box + mask == 44_347_573
    frozen = sum(p.numel() for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == sum(p.numel() for n, p in resnet50.named_parameters()
                         if n.split(".")[0] in ("conv1", "layer1") and p.dim() == 4)  # conv1 + layer1 convs
    assert total - frozen == 44_125_173


def test_backbone_uses_frozen_batchnorm_and_trains_layer2_to_4_only():
    with torch.device("meta"):
        model = build_maskrcnn()
    body = model.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53
    assert {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad} == {"layer2", "layer3", "layer4"}
    assert type(model.backbone.fpn.extra_blocks).__name__ == "LastLevelMaxPool"  # P6 = max pool of P5


def test_anchors_sizes_poolers_and_thresholds_are_the_references():
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=96, max_size=160)
    assert model.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert model.rpn.anchor_generator.aspect_ratios[0] == (0.5, 1.0, 2.0)
    assert (model.rpn._pre_nms_top_n["training"], model.rpn._post_nms_top_n["testing"], model.rpn.nms_thresh) == \
        (2000, 1000, 0.7)
    assert tuple(model.roi_heads.box_roi_pool.output_size) == (7, 7)
    assert model.roi_heads.box_roi_pool.sampling_ratio == model.roi_heads.mask_roi_pool.sampling_ratio == 2
    assert tuple(model.roi_heads.mask_roi_pool.output_size) == (14, 14)
    assert (model.roi_heads.score_thresh, model.roi_heads.nms_thresh, model.roi_heads.detections_per_img) == \
        (0.05, 0.5, 100)
    assert (model.roi_heads.fg_bg_sampler.batch_size_per_image, model.roi_heads.fg_bg_sampler.positive_fraction) \
        == (512, 0.25)
    assert model.transform.size_divisible == 32 and (model.transform.min_size, model.transform.max_size) == \
        ((96,), 160)
    full = build_maskrcnn.__kwdefaults__
    assert (full["min_size"], full["max_size"]) == (800, 1333)
    model.eval()
    with torch.no_grad():
        features = model.roi_heads.mask_head(torch.zeros(2, 64, 14, 14))
        assert model.roi_heads.mask_predictor(features).shape == (2, 81, 28, 28)  # 14x14 RoIs -> 28x28 masks


def test_batch_candidates_are_the_top_n_over_the_batch_and_per_image_when_asked():
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=96, max_size=160, num_image_candidates=5,
                           candidates_per_image=False)
    assert isinstance(model.rpn, BatchCandidatesRPN)
    boxes = torch.tensor([[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(6)])  # no two overlap: NMS keeps all
    proposals = torch.stack([boxes, boxes])
    logits = torch.tensor([9.0, 8, 7, 6, 5, 4, 3.5, 2, 1, 0, -1, -2])  # image 0 holds the 5 best
    shapes, per_level = [(96, 96), (96, 96)], [6]
    model.rpn.train()
    kept, scores = model.rpn.filter_proposals(proposals, logits, shapes, per_level)
    assert [len(k) for k in kept] == [5, 0]
    model.rpn.eval()  # inference: per image (1000 each here)
    assert [len(k) for k in model.rpn.filter_proposals(proposals, logits, shapes, per_level)[0]] == [6, 6]
    per_image = build_maskrcnn(MaskRCNNShape.debug(), num_image_candidates=5, candidates_per_image=True).rpn
    per_image.train()
    assert [len(k) for k in per_image.filter_proposals(proposals, logits, shapes, per_level)[0]] == [5, 5]


def test_the_debug_model_trains_and_infers_on_cpu():
    torch.manual_seed(0)
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    images = [torch.rand(3, 60, 80), torch.rand(3, 70, 50)]
    masks = torch.zeros(1, 60, 80, dtype=torch.uint8)
    masks[0, 10:30, 20:50] = 1
    targets = [{"boxes": torch.tensor([[20.0, 10, 50, 30]]), "labels": torch.tensor([3]), "masks": masks},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                "masks": torch.zeros(0, 70, 50, dtype=torch.uint8)}]  # an image with only crowds: no targets
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[1]["masks"].shape[1:] == (1, 70, 50)  # pasted into the original image


def test_backbone_file_in_torchvisions_layout_loads_and_bad_files_are_named(tmp_path):
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    weights = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        weights.layer2[0].bn1.running_var.fill_(2.0)
    torch.save(weights.state_dict(), tmp_path / "resnet18.pth")
    load_backbone(model, tmp_path / "resnet18.pth")
    assert torch.equal(model.backbone.body.layer2[0].bn1.running_var, torch.full((128,), 2.0))
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(model, tmp_path / "nope.pth")
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(BackboneError, match=r"resnet50\.pth: unexpected key 'layer1\.0\.bn3\.bias'"):
        load_backbone(model, tmp_path / "resnet50.pth")


def test_an_images_anchor_and_roi_samples_do_not_depend_on_its_batch():
    from maskrcnn.model import seed_sampling
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    sampler = model.roi_heads.fg_bg_sampler
    torch.manual_seed(0)
    matched = [torch.randint(0, 4, (3000,)) for _ in range(3)]  # 0 background, >= 1 a class

    def draw(indices, step=0):
        seed_sampling(model, [(7, step, i) for i in indices])  # (run seed, step, image id), as seeded_loss keys
        pos, neg = sampler([matched[i] for i in indices])
        return {i: (p.nonzero().flatten().tolist(), n.nonzero().flatten().tolist()) for i, p, n in zip(indices, pos, neg)}

    together, alone = draw([0, 1, 2]), draw([2])
    assert together[2] == alone[2]  # the same image, batched differently, samples the same
    assert draw([2], step=1)[2] != alone[2]  # the next step draws anew
    pos, neg = together[0]
    assert len(pos) == 128 and len(pos) + len(neg) == 512  # 512 RoIs per image, a quarter positive
    assert model.rpn.fg_bg_sampler.seeds == sampler.seeds and model.rpn.fg_bg_sampler.salt != sampler.salt


def test_a_training_step_and_inference_run_under_bf16_autocast():
    """The GPU runs' precision (PRECISION=bf16), exercised through CPU autocast: no dtype mismatch anywhere."""
    from common.precision import Precision
    torch.manual_seed(0)
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 16:48] = 1
    targets = [{"boxes": torch.tensor([[16.0, 8, 48, 40]]), "labels": torch.tensor([5]), "masks": masks}]
    with Precision("bf16", "cpu").autocast():
        losses = model([torch.rand(3, 64, 64)], targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    model.eval()
    with torch.no_grad(), Precision("bf16", "cpu").autocast():
        out = model([torch.rand(3, 64, 64)])
    assert out[0]["masks"].shape[1:] == (1, 64, 64)


def test_the_roi_box_loss_is_the_references_smooth_l1_with_beta_1():
    from torchvision.models.detection import roi_heads
    from maskrcnn.model import ReferenceRoIHeads, reference_fastrcnn_loss
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    assert isinstance(model.roi_heads, ReferenceRoIHeads)
    logits = torch.zeros(3, 81)
    deltas = torch.zeros(3, 81 * 4)
    labels, targets = [torch.tensor([5, 0, 7])], [torch.tensor([[0.5, 0, 0, 0], [9.0, 9, 9, 9], [2.0, 0, 0, 0]])]
    _, box = reference_fastrcnn_loss(logits, deltas, labels, targets)
    by_hand = (0.5 * 0.5 ** 2 + (2.0 - 0.5)) / 3  # beta 1: 0.5 x^2 below 1, |x| - 0.5 above; / sampled RoIs
    assert box.item() == pytest.approx(by_hand)
    _, torchvision_box = roi_heads.fastrcnn_loss(logits, deltas, labels, targets)
    assert torchvision_box.item() != pytest.approx(by_hand)  # beta 1/9
    torchvision_loss = roi_heads.fastrcnn_loss
    model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([2]),
                                     "masks": torch.ones(1, 64, 64, dtype=torch.uint8)}])
    assert roi_heads.fastrcnn_loss is torchvision_loss  # put back after the forward


def test_anchors_and_decoded_boxes_stay_float32_under_bf16_autocast():
    from torchvision.models.detection.image_list import ImageList
    from common.detection import Float32Anchors, Float32BoxCoder
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=800, max_size=1333)
    assert isinstance(model.rpn.anchor_generator, Float32Anchors)
    assert isinstance(model.rpn.box_coder, Float32BoxCoder) and isinstance(model.roi_heads.box_coder, Float32BoxCoder)
    images = ImageList(torch.zeros(1, 3, 800, 1216), [(800, 1216)])
    features = [torch.zeros(1, 8, 800 // s, 1216 // s, dtype=torch.bfloat16) for s in (4, 8, 16, 32, 64)]
    anchors = model.rpn.anchor_generator(images, features)[0]
    assert anchors.dtype == torch.float32
    exact = model.rpn.anchor_generator(images, [f.float() for f in features])[0]
    assert torch.equal(anchors, exact)
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    plain = AnchorGenerator(model.rpn.anchor_generator.sizes, model.rpn.anchor_generator.aspect_ratios)
    assert torch.equal(plain(images, [f.float() for f in features])[0], exact)  # float32 runs: unchanged
    assert (plain(images, features)[0].float() - exact).abs().max() >= 2.0  # what bf16 anchors would be off by
    codes = torch.tensor([[0.013, -0.021, 0.05, -0.04]], dtype=torch.bfloat16)
    boxes = torch.tensor([[1000.3, 700.7, 1200.9, 790.1]])
    decoded = model.rpn.box_coder.decode_single(codes, boxes)
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, model.rpn.box_coder.decode_single(codes.float(), boxes))
    rounded = boxes.to(torch.bfloat16)  # what torchvision's coder would decode from
    assert (rounded.float() - boxes).abs().max() > 0.2


def test_torchvisions_one_call_builder_is_the_trap_the_docstring_names():
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    with torch.device("meta"):
        trap = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81)
    assert any(isinstance(m, nn.BatchNorm2d) for m in trap.modules())
    assert sum(p.numel() for p in trap.parameters() if p.requires_grad) == 44_400_693  # all of them
