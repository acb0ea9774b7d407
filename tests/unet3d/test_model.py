"""The 3D U-Net's size on `meta`, its layer pattern, and the Dice + cross-entropy loss and Dice score."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unet3d.model import UNetShape, build_unet3d, dice, dice_ce_loss, dice_scores, one_hot


def block(cin, cout):  # 3^3 convolution without bias, then InstanceNorm's weight and bias
    return 27 * cin * cout + 2 * cout


def unet_parameters(filters, in_channels=1, classes=3):
    down = block(in_channels, filters[0]) + block(filters[0], filters[0])
    down += sum(block(i, o) + block(o, o) for i, o in zip(filters[:-1], filters[1:]))
    down += 2 * block(filters[-1], filters[-1])  # bottleneck
    widths = [filters[-1], *reversed(filters)]
    up = sum(8 * i * o + o + block(2 * o, o) + block(o, o) for i, o in zip(widths[:-1], widths[1:]))
    return down + up + filters[0] * classes + classes


def test_full_model_on_meta_has_the_architectures_parameter_count():
    with torch.device("meta"):
        model = build_unet3d()
    assert sum(p.numel() for p in model.parameters()) == unet_parameters((32, 64, 128, 256, 320)) == 31_190_243
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert len(convs) == 2 * (1 + 4 + 1 + 5) + 1 and len(norms) == len(convs) - 1
    assert all(norm.affine for norm in norms) and all(conv.bias is None for conv in convs[:-1])
    strides = [conv.stride[0] for conv in convs[:-1]]
    assert strides[::2] == [1, 2, 2, 2, 2, 2] + [1] * 5  # input block, 4 downsampling blocks, bottleneck; up
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.stride) for u in ups] == \
        [(320, 320, (2,) * 3, (2,) * 3), (320, 256, (2,) * 3, (2,) * 3), (256, 128, (2,) * 3, (2,) * 3),
         (128, 64, (2,) * 3, (2,) * 3), (64, 32, (2,) * 3, (2,) * 3)]


def test_debug_model_is_the_same_code_narrower_and_two_stages_shallower():
    shape = UNetShape.debug()
    model = build_unet3d(shape)
    assert sum(p.numel() for p in model.parameters()) == unet_parameters(shape.filters)
    assert (shape.divisor, UNetShape().divisor) == (8, 32)
    out = model(torch.randn(2, 1, 16, 16, 16))
    assert out.shape == (2, 3, 16, 16, 16)
    with pytest.raises(ValueError, match="more than 1 spatial element"):  # an 8^3 patch leaves a 1-voxel bottleneck
        model(torch.randn(2, 1, 8, 8, 8))


def test_dice_of_the_ground_truth_is_one_and_of_a_disjoint_prediction_is_zero():
    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8)
    label[..., :4, :, :] = 1
    label[..., 6:, :4, :4] = 2
    truth = one_hot(label)
    assert torch.allclose(dice(truth, truth), torch.ones(1, 2))
    logits = 10 * truth  # argmax is the label
    assert torch.allclose(dice_scores(logits, label), torch.ones(1, 2))
    wrong = one_hot(torch.zeros_like(label))  # all background
    assert dice_scores(10 * wrong, label).max() < 1e-6


def test_dice_counts_each_class_of_each_sample_on_its_own():
    label = torch.zeros(2, 1, 4, 4, 4, dtype=torch.uint8)
    label[0, 0, :2] = 1  # 32 kidney voxels, no tumor in sample 0
    label[1, 0, 0, 0, :2] = 2  # 2 tumor voxels in sample 1
    prediction = torch.zeros_like(label)
    prediction[0, 0, :1] = 1  # half of the kidney
    prediction[1, 0, 0, 0, :1] = 2  # half of the tumor
    scores = dice_scores(10 * one_hot(prediction), label)
    # 2|A and B| / (|A| + |B|): kidney 2*16/48; an empty class predicted empty scores 1 (the smoothing terms)
    assert torch.allclose(scores, torch.tensor([[2 * 16 / 48, 1.0], [1.0, 2 * 1 / 3]]), atol=1e-6)


def test_loss_is_the_mean_of_soft_dice_loss_and_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4)
    label = torch.randint(0, 3, (2, 1, 4, 4, 4), dtype=torch.uint8)
    p = torch.softmax(logits, 1)
    t = F.one_hot(label[:, 0].long(), 3).permute(0, 4, 1, 2, 3).float()
    soft = [[(2 * (p[n, c] * t[n, c]).sum() + 1e-6) / (p[n, c].sum() + t[n, c].sum() + 1e-6) for c in (1, 2)]
            for n in range(2)]
    expected = (1 - torch.tensor(soft).mean() + F.cross_entropy(logits, label[:, 0].long())) / 2
    assert dice_ce_loss(logits, label).item() == pytest.approx(expected.item(), rel=1e-6)
    assert dice_ce_loss(logits.bfloat16(), label).dtype == torch.float32
