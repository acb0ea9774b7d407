"""RoIAlign as two matrix products: the CPU fast path of `ROI_ALIGN=separable`.

torchvision's RoIAlign (aligned=False, a fixed sampling ratio s) averages, for
output bin (i, j) of a RoI, the bilinear interpolation of the feature map at
s x s points. A bilinear weight is a product of a weight along y and one along
x, and torchvision's rules for points near or past the border (a point more
than one cell outside contributes zero, one within a cell is clamped to the
edge) act on each axis alone, so the average is separable:

    out[k, c, i, j] = sum_{y, x} Wy[k, i, y] F[b_k, c, y, x] Wx[k, j, x]

with Wy[k, i, :] the mean over the s sample rows of bin i of their 1-D
interpolation weights (two taps each), and Wx alike. Two batched matmuls per
image replace torchvision's CPU kernels in training, whose backward — a
serial scatter of every sample's four taps — was 44% of a Mask R-CNN training
step of the CPU config (maskrcnn/README.md); autograd's backward of the
matmuls is again two matmuls. The result equals torchvision's up to float rounding
(tests/maskrcnn/test_roi_align.py: values and gradients). The RoI coordinates
get no gradient, as in torchvision. Memory: RoIs x channels x height x
output width per product, taken in chunks of ROI_CHUNK RoIs; meant for the
small CPU config, where it is faster. On a GPU torchvision's kernel stays.
"""
from __future__ import annotations

import torch
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import poolers

ROI_CHUNK = 256


def axis_weights(start: torch.Tensor, bin_size: torch.Tensor, bins: int, samples: int, size: int) -> torch.Tensor:
    """(RoIs, bins, size): per bin, the mean over its `samples` points of torchvision's 1-D bilinear weights along
    an axis of `size` cells; `start` and `bin_size` per RoI, in cells."""
    offsets = torch.arange(bins, dtype=start.dtype, device=start.device)[:, None] + \
        (torch.arange(samples, dtype=start.dtype, device=start.device) + 0.5) / samples
    position = start[:, None, None] + offsets[None] * bin_size[:, None, None]  # (RoIs, bins, samples)
    inside = (position >= -1.0) & (position <= size)  # torchvision: a point further out contributes nothing
    position = position.clamp(min=0)
    low = position.floor().long()
    at_edge = low >= size - 1  # both taps on the last cell
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    fraction = torch.where(at_edge, 0.0, position - low)
    weights = torch.zeros(*position.shape, size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(3, low[..., None], ((1 - fraction) * inside)[..., None])
    weights.scatter_add_(3, high[..., None], (fraction * inside)[..., None])
    return weights.mean(2)


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int) -> torch.Tensor:
    """torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=False) for
    (N, C, H, W) features and (K, 5) RoIs (image index, x1, y1, x2, y2 in image coordinates)."""
    if sampling_ratio <= 0:
        raise ValueError(f"sampling_ratio {sampling_ratio}: the separable RoIAlign needs a fixed sampling ratio (the "
                         "adaptive one samples each RoI differently)")
    (ph, pw), (n, c, h, w) = output_size, features.shape
    with torch.no_grad():
        rois = rois.to(features.dtype)
        x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale).unbind(1)
        width, height = (x2 - x1).clamp(min=1.0), (y2 - y1).clamp(min=1.0)  # aligned=False: at least a cell
        wy = axis_weights(y1, height / ph, ph, sampling_ratio, h)
        wx = axis_weights(x1, width / pw, pw, sampling_ratio, w)
        image = rois[:, 0].long()
    out = features.new_zeros(rois.shape[0], c, ph, pw)
    for b in range(n):
        index = (image == b).nonzero().flatten()
        for chunk in index.split(ROI_CHUNK):
            rows = torch.einsum("chw,kjw->kchj", features[b], wx[chunk])  # (k, C, H, pw)
            out[chunk] = torch.einsum("kih,kchj->kcij", wy[chunk], rows)
    return out


class SeparableMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (the same levels, scales and level mapping) with each level's RoIAlign
    computed by `roi_align` above where a backward will follow (training); without one (evaluation) torchvision's
    forward kernel, which is not the slow part and is faster at evaluation's 1,000 proposals per image. Adds no
    state, so a MultiScaleRoIAlign's class can be swapped for it."""

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        features = [x[name] for name in self.featmap_names]
        if not (torch.is_grad_enabled() and any(f.requires_grad for f in features)):
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = poolers._setup_scales(features, image_shapes, self.canonical_scale,
                                                                 self.canonical_level)
        rois = poolers._convert_to_roi_format(boxes)
        levels = self.map_levels(boxes) if len(features) > 1 else \
            torch.zeros(len(rois), dtype=torch.long, device=rois.device)
        result = features[0].new_zeros(len(rois), features[0].shape[1], *self.output_size)
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            index = torch.where(levels == level)[0]
            result[index] = roi_align(feature, rois[index], self.output_size, scale, self.sampling_ratio).to(
                result.dtype)
        return result
