"""Sliding-window evaluation of whole validation volumes: mean Dice of kidney and tumor over the 42 cases.

The reference's inference (image_segmentation/pytorch/runtime/inference.py),
step by step, for a volume of side s per axis and a window of side w at
overlap 0.5 (stride t = w / 2):
1. crop: when s mod t is under t / 2, that remainder is cut off, half from
   each end (the label is cut alike, and the score is taken on what is left);
2. pad: with the constant -2.2, up to the next multiple of t (and at least w),
   half before and half after;
3. windows at every multiple of t along each axis; each window's logits are
   weighted by a Gaussian importance map — the cube root of the outer product
   of three 1-D Gaussians of standard deviation w / 8, scaled to a maximum of 1
   — and summed, and the sum is divided by the summed weights;
4. the padding is cut away again; the score is the Dice of the argmax.
MONAI's `sliding_window_inference` differs in steps 1-3 (FACTS.md §8), hence
this code. Windows run `batch` at a time (VAL_BATCH_SIZE; the last group padded to
`batch` with empty windows whose outputs are dropped).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from common import dist
from unet3d.config import RULES
from unet3d.model import dice_scores


def gaussian_window(side: int) -> torch.Tensor:
    """The reference's (side, side, side) importance map, float32."""
    offsets = np.arange(side, dtype=np.float64) - (side - 1) / 2
    g = np.exp(-0.5 * (offsets / (0.125 * side)) ** 2)  # scipy.signal.windows.gaussian(side, side / 8)
    weights = np.cbrt(np.einsum("i,j,k->ijk", g, g, g))
    return torch.from_numpy(weights / weights.max()).float()


def crop_and_pad(shape: Iterable[int], window: int, stride: int) -> tuple[list[slice], list[tuple[int, int]]]:
    """Steps 1 and 2 for a volume of `shape`: the crop of each axis and its (before, after) padding."""
    crops, pads = [], []
    for s in shape:
        if s < window:
            raise ValueError(f"a volume side of {s} is shorter than the {window} window")
        cut = s % stride if s % stride < stride // 2 else 0
        crops.append(slice(cut // 2, s - (cut - cut // 2)))
        c = s - cut
        extra = (stride - c % stride) % stride
        if c + extra < window:
            extra += stride
        pads.append((extra // 2, extra - extra // 2))
    return crops, pads


def sliding_window(model: nn.Module, image: torch.Tensor, window: int, overlap: float = RULES.validation_overlap,
                   batch: int = 1, pad_value: float = RULES.padding_value,
                   weights: torch.Tensor | None = None) -> tuple[torch.Tensor, list[slice]]:
    """(1, C, ...) logits of the cropped (1, 1, D, H, W) `image`, and the crop (for the label): steps 1-4."""
    stride = int(window * (1 - overlap))
    crops, pads = crop_and_pad(image.shape[2:], window, stride)
    x = image[(..., *crops)]
    cropped = x.shape[2:]
    pad_arg = [p for before_after in reversed(pads) for p in before_after]  # F.pad wants the last axis first
    x = F.pad(x, pad_arg, mode="constant", value=pad_value)
    if weights is None:
        weights = gaussian_window(window)
    weights = weights.to(x.device)
    corners = [(i, j, k) for i in range(0, x.shape[2] - window + 1, stride)
               for j in range(0, x.shape[3] - window + 1, stride) for k in range(0, x.shape[4] - window + 1, stride)]
    total = None
    norm = torch.zeros(x.shape[2:], dtype=torch.float32, device=x.device)
    for first in range(0, len(corners), batch):
        group = corners[first:first + batch]
        windows = torch.cat([x[..., i:i + window, j:j + window, k:k + window] for i, j, k in group])
        if len(group) < batch:  # every forward the same shape (compiled graphs, cuDNN plans); padding dropped below
            windows = F.pad(windows, [0] * 8 + [0, batch - len(group)])
        logits = model(windows).float() * weights
        if total is None:
            total = torch.zeros((1, logits.shape[1], *x.shape[2:]), dtype=torch.float32, device=x.device)
        for (i, j, k), out in zip(group, logits):
            total[0, :, i:i + window, j:j + window, k:k + window] += out
            norm[i:i + window, j:j + window, k:k + window] += weights
    total /= norm
    inside = tuple(slice(before, before + c) for (before, _), c in zip(pads, cropped))
    return total[(..., *inside)], crops


class Evaluator:
    """Each rank scores its cases; the per-class Dice sums and the case count are summed over ranks."""

    def __init__(self, window: int, batch: int, device: torch.device):
        self.window, self.batch, self.device = window, batch, device
        self.weights = gaussian_window(window).to(device)

    def case_scores(self, model: nn.Module, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """(2,) Dice of kidney and tumor for one (1, 1, D, H, W) volume."""
        logits, crops = sliding_window(model, image, self.window, batch=self.batch, weights=self.weights)
        return dice_scores(logits, label[(..., *crops)])[0]

    def __call__(self, model: nn.Module, volumes: Iterable) -> float:
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # kidney sum, tumor sum, cases
        for image, label in volumes:
            totals[:2] += self.case_scores(model, image, label).double()
            totals[2] += 1
        totals = dist.all_reduce_sum(totals)
        if totals[2] == 0:
            raise RuntimeError("no validation case was scored")
        return float(totals[:2].sum() / (2 * totals[2]))
