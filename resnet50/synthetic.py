"""A small, learnable dataset in the ImageNet folder layout, for runs without the real data.

    python3 -m resnet50.synthetic DIR

A class is a hue plus a stripe orientation; size, phase, frequency and pixel
noise vary. A fraction of validation images is drawn from another class, so
top-1 tops out near 1 - noise: the target (0.759) is reachable but 1.0 (which
the checker rejects) is not. The set includes ImageNet's quirks — grayscale
and CMYK JPEGs and a PNG named `.JPEG` — so the reader real runs use is the
one exercised. `SYNTHETIC.json` (common.synthetic) marks it.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common import synthetic


@dataclass(frozen=True)
class SyntheticSpec:
    num_classes: int = 10
    train_per_class: int = 32
    val_per_class: int = 24
    val_label_noise: float = 0.05
    min_size: int = 72  # image sides are drawn from [min_size, max_size]
    max_size: int = 128
    seed: int = 0


def class_image(rng: np.random.Generator, label: int, spec: SyntheticSpec) -> np.ndarray:
    height, width = rng.integers(spec.min_size, spec.max_size + 1, size=2)
    red, green, blue = colorsys.hsv_to_rgb(label / spec.num_classes, 0.75, 0.9)
    angle = math.pi * label / spec.num_classes
    freq = rng.uniform(0.15, 0.25)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
    base = np.array([red, green, blue]) * 255
    image = base[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    image += rng.normal(0, 25, size=image.shape)  # pixel noise keeps the task from being trivial
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Write the dataset under `root` (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) and its marker."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    wnids = [f"n{10000000 + 1111 * k:08d}" for k in range(spec.num_classes)]
    for split, per_class in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        for label, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                drawn = label
                if split == "val" and rng.random() < spec.val_label_noise:
                    drawn = (label + rng.integers(1, spec.num_classes)) % spec.num_classes
                image = Image.fromarray(class_image(rng, drawn, spec))
                path = folder / f"{wnid}_{i:05d}.JPEG"
                if i == 0 and label == 0 and split == "train":
                    image.save(path, format="PNG")  # ImageNet has one PNG named .JPEG
                elif i % 16 == 1:
                    image.convert("CMYK").save(path, format="JPEG", quality=90)
                elif i % 32 == 2:
                    image.convert("L").save(path, format="JPEG", quality=90)
                else:
                    image.save(path, format="JPEG", quality=90)
    return synthetic.write_marker(root, asdict(spec))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, write_synthetic, argv)


if __name__ == "__main__":
    raise SystemExit(main())
