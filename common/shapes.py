"""Drawn objects for the synthetic detection sets (retinanet, maskrcnn), and the backbone they start from.

Images (noisy backgrounds) hold 1..max_objects of four shapes — a red disk,
an orange square, a green triangle, a blue 2:1 bar — with jittered colour,
size and place, overlapping by at most IoU 0.1. Each benchmark maps the shapes
onto classes of its own dataset; `outline` is a shape's polygon (for masks).

The rules start from an ImageNet-pretrained backbone; the synthetic flows make
their own the same way (`pretrain_backbone`): the configured torchvision ResNet
(trainable BatchNorm) is trained briefly, untimed, to tell object crops and
background apart, and saved in torchvision's state-dict layout as
`backbone/<name>-synthetic.pth` — the file the detector loads, its BatchNorm
statistics becoming the detector's frozen ones.

`ShapeSetSpec` is what each benchmark's `SyntheticSpec` holds (both use it as it is).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image, ImageDraw

from common.detection import BACKBONE_DIR
from common.precision import Precision
from common.step import TrainStep

@dataclass(frozen=True)
class ShapeSetSpec:
    """A synthetic detection set: its size, its images and objects, and the backbone's pre-training."""

    train_images: int = 384
    val_images: int = 96
    min_side: int = 64
    max_side: int = 96
    max_objects: int = 2
    object_min: float = 0.4  # object side as a fraction of the image's shorter side
    object_max: float = 0.75
    backbone: str = "resnet18"  # the debug models'; a full run's would be its backbone (resnet50, resnext50_32x4d)
    pretrain_steps: int = 150
    crop_size: int = 48  # the backbone's pre-training crops
    seed: int = 0


SHAPES = {"disk": (220, 40, 40), "square": (235, 140, 30), "triangle": (40, 170, 60), "bar": (40, 80, 220)}
DISK_VERTICES = 32  # a disk's outline polygon: within a pixel of the drawn ellipse at these sizes


def _object(rng: np.random.Generator, shape: str, width: int, height: int, placed: list, spec):
    """(xyxy box, colour) of one object that overlaps the placed ones by at most IoU 0.1."""
    for _ in range(50):
        side = rng.uniform(spec.object_min, spec.object_max) * min(width, height)
        w, h = (min(side * 1.6, width - 1), side * 0.8) if shape == "bar" else (side, side)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = (x0, y0, x0 + w, y0 + h)
        if all(iou(box, other) < 0.1 for other in placed):
            jitter = rng.integers(-25, 26, 3)
            return box, tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(SHAPES[shape], jitter))
    return None


def iou(a, b) -> float:
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def outline(shape: str, box) -> list[float]:
    """The shape's polygon inside `box` as COCO writes it: [x1, y1, x2, y2, ...]."""
    x0, y0, x1, y1 = box
    if shape == "disk":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        angles = [2 * math.pi * k / DISK_VERTICES for k in range(DISK_VERTICES)]
        points = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    elif shape == "triangle":
        points = [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
    else:
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [round(v, 2) for point in points for v in point]


def draw_image(rng: np.random.Generator, spec) -> tuple[Image.Image, list]:
    """One image and its [(shape, xyxy box)]."""
    width, height = (int(v) for v in rng.integers(spec.min_side, spec.max_side + 1, 2))
    base = rng.uniform(60, 190, 3)
    pixels = np.clip(base + rng.normal(0, 22, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        shape = list(SHAPES)[int(rng.integers(len(SHAPES)))]
        drawn = _object(rng, shape, width, height, [box for _, box in objects], spec)
        if drawn is None:
            continue
        (x0, y0, x1, y1), colour = drawn
        if shape == "disk":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "triangle":
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        objects.append((shape, (x0, y0, x1, y1)))
    return image, objects


def crops(drawn: list, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object crops (with some context) labelled by shape, and background crops labelled len(SHAPES)."""
    xs, ys = [], []
    for image, objects in drawn:
        rgb = image.convert("RGB")
        for shape, (x0, y0, x1, y1) in objects:
            pad = 0.15 * max(x1 - x0, y1 - y0)
            xs.append(rgb.crop((x0 - pad, y0 - pad, x1 + pad, y1 + pad)).resize((size, size)))
            ys.append(list(SHAPES).index(shape))
        w = int(rng.integers(16, min(rgb.size) // 2 + 1))
        x, y = int(rng.integers(0, rgb.width - w + 1)), int(rng.integers(0, rgb.height - w + 1))
        if all(iou((x, y, x + w, y + w), box) < 0.05 for _, box in objects):
            xs.append(rgb.crop((x, y, x + w, y + w)).resize((size, size)))
            ys.append(len(SHAPES))
    images = torch.stack([torch.from_numpy(np.asarray(c, dtype=np.float32) / 255).permute(2, 0, 1) for c in xs])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (images - mean[:, None, None]) / std[:, None, None], torch.tensor(ys)


def pretrain_backbone(root: Path, drawn: list, spec) -> Path:
    """The configured torchvision backbone trained briefly (untimed) to classify crops; see the module docstring."""
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed + 1)
    x, y = crops(drawn, rng, spec.crop_size)
    model = getattr(torchvision.models, spec.backbone)(weights=None, num_classes=len(SHAPES) + 1)
    criterion = nn.CrossEntropyLoss()
    step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), lambda b: criterion(model(b[0]), b[1]),
                     precision=Precision("fp32", "cpu"), device=torch.device("cpu"), count=lambda b: len(b[1]))

    if len(y) == 0:
        raise ValueError(f"{root}: no object or background crops to pre-train the backbone on")
    batch = min(64, len(y))  # a tiny test set may hold fewer crops than one batch

    def batches():
        while True:
            order = torch.randperm(len(y))
            for i in range(0, len(y) - batch + 1, batch):
                flip = torch.rand(()) < 0.5
                yield (x[order[i:i + batch]].flip(-1) if flip else x[order[i:i + batch]]), y[order[i:i + batch]]

    start, stream = time.perf_counter(), batches()
    for _ in range(spec.pretrain_steps):
        step(stream)
    loss = step.monitor.drain().mean_loss
    path = Path(root) / BACKBONE_DIR / f"{spec.backbone}-synthetic.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"backbone: {spec.pretrain_steps} steps on {len(y)} crops in {time.perf_counter() - start:.0f} s, "
          f"mean loss {loss:.3f} -> {path}")
    return path
