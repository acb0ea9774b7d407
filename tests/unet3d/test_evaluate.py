"""Sliding-window evaluation: the reference's crop, padding and Gaussian weighting, checked on stub models."""
import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn as nn

from unet3d.evaluate import Evaluator, crop_and_pad, gaussian_window, sliding_window
from unet3d.model import UNetShape, build_unet3d, dice_scores, one_hot


class PredictTheLabel(nn.Module):
    """A 'model' whose input is the label itself (0, 1, 2; padding -2.2 becomes background)."""

    def forward(self, x):
        return 10 * one_hot(x.round().clamp(0, 2).to(torch.uint8))


class Counter(nn.Module):
    """Returns k everywhere on its k-th call (one window per call)."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.full((x.shape[0], 3, *x.shape[2:]), float(self.calls))


def test_gaussian_window_is_the_cube_root_of_three_scipy_gaussians_scaled_to_one():
    for side in (32, 128):
        g = scipy.signal.windows.gaussian(side, 0.125 * side)
        expected = np.cbrt(np.outer(np.outer(g, g), g).reshape(side, side, side))
        expected /= expected.max()
        assert torch.allclose(gaussian_window(side), torch.from_numpy(expected).float(), atol=1e-7)


@pytest.mark.parametrize("side, crop, pad", [
    (128, slice(0, 128), (0, 0)),  # exactly one window
    (130, slice(1, 129), (0, 0)),  # 130 mod 64 = 2 < 32: the 2 extra voxels are cut, one each end
    (170, slice(0, 170), (11, 11)),  # 170 mod 64 = 42 >= 32: padded to 192, 11 before and 11 after
    (200, slice(4, 196), (0, 0)),  # 200 mod 64 = 8: cut to 192
    (235, slice(0, 235), (10, 11)),  # 235 mod 64 = 43: padded to 256, the odd voxel after
])
def test_crop_and_pad_follow_the_references_rule(side, crop, pad):
    crops, pads = crop_and_pad([side, 128, 128], window=128, stride=64)
    assert (crops[0], pads[0]) == (crop, pad)
    assert (crops[1], pads[1]) == (slice(0, 128), (0, 0))


def test_crop_and_pad_refuse_a_volume_smaller_than_the_window():
    with pytest.raises(ValueError, match="side of 100 is shorter than the 128 window"):
        crop_and_pad([100, 128, 128], window=128, stride=64)


@pytest.mark.parametrize("shape", [(32, 32, 32), (34, 44, 48), (47, 33, 40)])
def test_predict_the_label_stub_reassembles_the_cropped_volume_exactly(shape):
    rng = np.random.default_rng(0)
    label = torch.from_numpy(rng.integers(0, 3, (1, 1, *shape)).astype(np.uint8))
    logits, crops = sliding_window(PredictTheLabel(), label.float(), window=32, batch=3)
    cropped = label[(..., *crops)]
    assert logits.shape[2:] == cropped.shape[2:]
    assert torch.equal(logits.argmax(1, keepdim=True).to(torch.uint8), cropped)
    assert torch.allclose(dice_scores(logits, cropped), torch.ones(1, 2))
    # the identity returns the (cropped) input: a weighted mean of equal values
    image = torch.from_numpy(rng.normal(size=(1, 1, *shape)).astype(np.float32))
    same, crops = sliding_window(nn.Identity(), image, window=32)
    assert torch.allclose(same, image[(..., *crops)], atol=1e-5)


def test_overlapping_windows_are_averaged_with_their_gaussian_weights():
    counter = Counter()
    out, _ = sliding_window(counter, torch.zeros(1, 1, 48, 48, 48), window=32, batch=1)
    assert counter.calls == 8  # windows at 0 and 16 on each axis
    w = gaussian_window(32)
    assert out[0, 0, 0, 0, 0] == 1.0  # only the first window covers a corner
    # voxel 24 on each axis: local offset 24 in windows at 0, 8 in windows at 16 (calls in i, j, k order)
    weights = [w[24 if i == 0 else 8, 24 if j == 0 else 8, 24 if k == 0 else 8]
               for i in (0, 16) for j in (0, 16) for k in (0, 16)]
    expected = sum(wk * (n + 1) for n, wk in enumerate(weights)) / sum(weights)
    assert out[0, 0, 24, 24, 24].item() == pytest.approx(expected.item(), rel=1e-6)


def test_batching_windows_changes_nothing_and_the_evaluator_averages_over_cases():
    torch.manual_seed(0)
    model = build_unet3d(UNetShape.debug()).eval()
    image = torch.randn(1, 1, 40, 36, 48)
    with torch.no_grad():
        one, _ = sliding_window(model, image, window=32, batch=1)
        four, _ = sliding_window(model, image, window=32, batch=4)
    assert torch.allclose(one, four, atol=1e-5)
    label = torch.zeros(1, 1, 40, 40, 40, dtype=torch.uint8)
    label[..., 5:20, 5:20, 5:20] = 1
    label[..., 8:12, 8:12, 8:12] = 2
    perfect = (label.float(), label)
    empty_guess = (torch.zeros(1, 1, 40, 40, 40), label)  # predicts background: Dice 0 for both classes
    score = Evaluator(32, 2, torch.device("cpu"))(PredictTheLabel(), [perfect, empty_guess])
    assert score == pytest.approx(0.5, abs=1e-6)
