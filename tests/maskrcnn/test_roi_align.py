"""ROI_ALIGN=separable: RoIAlign as two matmuls gives torchvision's values and gradients (float64, so that only
summation order differs), for RoIs inside, across and past the border, and through the multi-scale pooler."""
from collections import OrderedDict
from unittest import mock

import pytest
import torch
import torchvision.ops
from torchvision.ops import poolers

from maskrcnn.model import MaskRCNNShape, build_maskrcnn
from maskrcnn.roi_align import SeparableMultiScaleRoIAlign, roi_align


def rois_of(images: int, side: float, count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 5) RoIs: random ones, plus one past every border, one thinner than a cell, one on the far edge."""
    xy = torch.rand(count, 2, generator=generator, dtype=torch.float64) * side
    wh = torch.rand(count, 2, generator=generator, dtype=torch.float64) * side / 2 + 0.1
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:3] = torch.tensor([[-0.4 * side, -0.3 * side, 1.3 * side, 1.2 * side], [5.0, 7.0, 5.2, 7.1],
                              [side - 2.0, side - 1.0, side + 9.0, side + 3.0]], dtype=torch.float64)
    index = torch.randint(0, images, (count, 1), generator=generator).double()
    return torch.cat([index, boxes], 1)


@pytest.mark.parametrize("output_size,scale,sampling", [((7, 7), 0.25, 2), ((14, 14), 0.125, 2), ((3, 5), 0.5, 1),
                                                        ((4, 4), 0.25, 3)])
def test_values_and_feature_gradients_are_torchvisions(output_size, scale, sampling):
    generator = torch.Generator().manual_seed(sum(output_size) + sampling)
    features = torch.randn(3, 6, 13, 17, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = rois_of(3, 17 / scale, 40, generator)
    expected = torchvision.ops.roi_align(features, rois, output_size, scale, sampling, aligned=False)
    got = roi_align(features, rois, output_size, scale, sampling)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    expected_grad, = torch.autograd.grad(expected, features, upstream)
    got_grad, = torch.autograd.grad(got, features, upstream)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-10, atol=1e-12)
    assert expected.abs().sum() > 0 and expected_grad.abs().sum() > 0


def test_the_rois_get_no_gradient_and_an_adaptive_sampling_ratio_is_refused():
    features = torch.randn(1, 2, 8, 8, requires_grad=True)
    rois = torch.tensor([[0.0, 1.0, 1.0, 20.0, 24.0]], requires_grad=True)
    out = roi_align(features, rois, (2, 2), 0.25, 2)
    assert torch.autograd.grad(out.sum(), rois, allow_unused=True) == (None,)
    with pytest.raises(ValueError, match="sampling_ratio 0: the separable RoIAlign needs a fixed sampling ratio"):
        roi_align(features, rois, (2, 2), 0.25, 0)


def test_the_multi_scale_pooler_maps_levels_as_torchvisions():
    generator = torch.Generator().manual_seed(0)
    names = ["0", "1", "2", "3"]
    levels = OrderedDict((name, torch.randn(2, 4, 64 // 2 ** i, 48 // 2 ** i, generator=generator,
                                            dtype=torch.float64, requires_grad=True)) for i, name in enumerate(names))
    image_shapes = [(256, 192), (240, 180)]
    boxes = []
    for _ in image_shapes:  # sides from 2 to 512 px: RoIs on every level (P5 from 448)
        xy = torch.rand(30, 2, generator=generator, dtype=torch.float64) * 100
        side = 2 ** (1 + 8 * torch.rand(30, 1, generator=generator, dtype=torch.float64))
        boxes.append(torch.cat([xy, xy + side], 1))
    reference = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)
    separable = torchvision.ops.MultiScaleRoIAlign(names, 7, 2)
    separable.__class__ = SeparableMultiScaleRoIAlign
    expected, got = reference(levels, boxes, image_shapes), separable(levels, boxes, image_shapes)
    assert len(set(reference.map_levels(boxes).tolist())) == 4
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    expected_grads = torch.autograd.grad(expected.sum(), list(levels.values()))
    got_grads = torch.autograd.grad(got.sum(), list(levels.values()))
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    calls = []
    with mock.patch.object(poolers, "roi_align", lambda *a, **k: calls.append(1) or torchvision.ops.roi_align(*a, **k)):
        with torch.no_grad():  # evaluation: torchvision's forward kernel, one call per level
            torch.testing.assert_close(separable(levels, boxes, image_shapes), expected, rtol=1e-10, atol=1e-12)
        assert len(calls) == 4
        separable(levels, boxes, image_shapes)  # training: the matmuls
        assert len(calls) == 4


def test_roi_align_separable_swaps_both_poolers_and_an_unknown_name_is_refused():
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=96, max_size=160, roi_align="separable")
    assert type(model.roi_heads.box_roi_pool) is type(model.roi_heads.mask_roi_pool) is SeparableMultiScaleRoIAlign
    assert type(build_maskrcnn(MaskRCNNShape.debug()).roi_heads.box_roi_pool) is torchvision.ops.MultiScaleRoIAlign
    with pytest.raises(ValueError, match="roi_align 'fast': expected torchvision or separable"):
        build_maskrcnn(MaskRCNNShape.debug(), roi_align="fast")
