"""A small, learnable instance-segmentation set in the COCO 2017 layout, and a backbone checkpoint to start from.

    python3 -m maskrcnn.synthetic DIR

Images (noisy backgrounds, 64-96 px) hold 1-2 drawn objects (`common.shapes`)
standing for four of COCO's 80 categories — a red disk ("sports ball"), an
orange square ("tv"), a green triangle ("kite"), a blue 2:1 bar ("bench") —
each annotated with its polygon mask, its box and area, in
`annotations/instances_{train,val}2017.json` with all 80 categories and their
real ids, through `maskrcnn.data.write_split`, so the reader real runs use is
the one exercised. The splits hold COCO's cases: grayscale JPEGs, a crowd
annotation (three small dots under one RLE mask, `iscrowd` 1) in every 32nd
image, and an image without annotations in each split (training skips it;
validation scores it, as COCO's 48 such images are).

The backbone checkpoint (`backbone/<name>-synthetic.pth`, torchvision's
layout) is pre-trained on object crops by `common.shapes.pretrain_backbone`.
`SYNTHETIC.json` (common.synthetic) marks the dataset.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from common import synthetic
from common.shapes import ShapeSetSpec, draw_image, outline, pretrain_backbone
from maskrcnn.config import COCO_CATEGORIES, RULES
from maskrcnn.data import image_dir, write_split

CATEGORY_OF = {"disk": 37, "square": 72, "triangle": 38, "bar": 15}  # sports ball, tv, kite, bench
CROWD_EVERY = 32  # images 5, 37, 69, ... of each split carry a crowd annotation
EMPTY_IMAGE = 4  # this image of each split is drawn without objects


@dataclass(frozen=True)
class SyntheticSpec(ShapeSetSpec):
    """`common.shapes.ShapeSetSpec` with 192 training and 32 validation images, the ResNet-18 backbone.

    Fewer than retinanet's 384 / 96 so that an epoch (47 steps of 4) and its evaluation are short: the run
    evaluates every epoch, as the rules require, and stops at the first evaluation past both targets, so
    shorter epochs stop it closer to the step where it gets there.
    """

    train_images: int = 192
    val_images: int = 32


def _crowd(rng: np.random.Generator, image: Image.Image) -> dict:
    """Three small dots drawn near a corner and their union as one uncompressed-RLE crowd mask."""
    from pycocotools import mask as mask_util

    draw = ImageDraw.Draw(image)
    mask = Image.new("L", image.size)
    mask_draw = ImageDraw.Draw(mask)
    for _ in range(3):
        r = float(rng.uniform(2, 4))
        cx, cy = float(rng.uniform(r, 14)), float(rng.uniform(r, 14))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 250, 250))
        mask_draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
    binary = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    rle = mask_util.encode(binary)
    counts = _uncompressed(binary)
    x, y, w, h = (float(v) for v in mask_util.toBbox(rle))
    return {"segmentation": {"size": [image.height, image.width], "counts": counts}, "bbox": [x, y, w, h],
            "area": float(mask_util.area(rle)), "iscrowd": 1}


def _uncompressed(binary: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE (as crowd annotations are stored): run lengths in column-major order, from 0s."""
    flat = binary.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [len(flat)]])
    runs = np.diff(bounds).tolist()
    return runs if flat[0] == 0 else [0] + runs


def write_images(root: Path, split: str, count: int, rng: np.random.Generator, spec: SyntheticSpec,
                 first_id: int = 1) -> list[tuple[Image.Image, list]]:
    """`count` images in <root>/{train,val}2017 and the split's json; returns the drawn (image, objects)."""
    folder = image_dir(root, split)
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, drawn = [], [], []
    for i in range(count):
        image, objects = draw_image(rng, spec)
        if i == EMPTY_IMAGE:
            image, objects = Image.new("RGB", image.size, tuple(int(v) for v in rng.integers(60, 190, 3))), []
        image_id = first_id + i
        name = f"{image_id:012d}.jpg"
        for shape, box in objects:
            x0, y0, x1, y1 = box
            polygon = outline(shape, box)
            annotations.append({"id": first_id * 10 + len(annotations), "image_id": image_id,
                                "category_id": CATEGORY_OF[shape], "segmentation": [polygon],
                                "area": _polygon_area(polygon), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
        if i % CROWD_EVERY == 5:
            annotations.append({"id": first_id * 10 + len(annotations), "image_id": image_id,
                                "category_id": CATEGORY_OF["disk"], **_crowd(rng, image)})
        if i % 16 == 1:
            image.convert("L").save(folder / name, format="JPEG", quality=92)  # COCO holds grayscale JPEGs
        else:
            image.save(folder / name, format="JPEG", quality=92)
        images.append({"id": image_id, "file_name": name, "height": image.height, "width": image.width})
        drawn.append((image, objects))
    write_split(root, split, COCO_CATEGORIES, images, annotations)
    return drawn


def _polygon_area(polygon: list[float]) -> float:
    x, y = np.array(polygon[0::2]), np.array(polygon[1::2])
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Both splits, the backbone checkpoint, then the marker."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    drawn = write_images(root, "train", spec.train_images, rng, spec)
    write_images(root, "val", spec.val_images, rng, spec, first_id=1_000_000)
    backbone = pretrain_backbone(root, [d for d in drawn if d[1]], spec)
    objects = sum(len(o) for _, o in drawn)
    names = dict(COCO_CATEGORIES)
    return synthetic.write_marker(root, asdict(spec), backbone=str(backbone.relative_to(root)),
                                  categories=[names[c] for c in CATEGORY_OF.values()], train_objects=objects,
                                  num_classes=RULES.num_classes,
                                  mean_objects_per_image=round(objects / max(1, len(drawn)), 3))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
