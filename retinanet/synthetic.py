"""A small, learnable detection set in the MLPerf OpenImages layout, and a backbone checkpoint to start from.

    python3 -m retinanet.synthetic DIR

Images (noisy backgrounds, 64-96 px) hold 1-2 drawn objects (`common.shapes`)
standing for four of the 264 classes — a red disk ("Apple"), an orange square
("Box"), a green triangle ("Tent"), a blue 2:1 bar ("Flag"); boxes and labels
go into `labels/openimages-mlperf.json` with all 264 categories, through
`retinanet.data.write_split`, so the reader real runs use is the one
exercised. The split holds OpenImages' quirks: a grayscale JPEG, a CMYK JPEG
and a PNG named `.jpg`.

The backbone checkpoint (`backbone/<name>-synthetic.pth`, torchvision's
layout) is pre-trained on object crops by `common.shapes.pretrain_backbone`.
`SYNTHETIC.json` (common.synthetic) marks the dataset.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from common import synthetic
from common.shapes import ShapeSetSpec, draw_image, pretrain_backbone
from retinanet.config import MLPERF_CLASSES, RULES
from retinanet.data import write_split

CLASS_OF = {"disk": "Apple", "square": "Box", "triangle": "Tent", "bar": "Flag"}  # common.shapes.SHAPES order

class SyntheticSpec(ShapeSetSpec):
    """`common.shapes.ShapeSetSpec` as it is: 384 training and 96 validation images, the ResNet-18 backbone."""


def write_images(root: Path, split: str, count: int, rng: np.random.Generator, spec: SyntheticSpec,
                 first_annotation: int = 1) -> list[tuple[Image.Image, list]]:
    """`count` images in <root>/<split>/data and the split's json; returns the drawn (image, objects)."""
    data_dir = root / split / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, drawn = [], [], []
    for i in range(count):
        image, objects = draw_image(rng, spec)
        name = f"{split[:1]}{i:07d}.jpg"
        if i == 0:
            image.save(data_dir / name, format="PNG")  # a PNG named .jpg, as OpenImages has
        elif i == 1:
            image.convert("L").save(data_dir / name, format="JPEG", quality=92)
        elif i == 2:
            image.convert("CMYK").save(data_dir / name, format="JPEG", quality=92)
        else:
            image.save(data_dir / name, format="JPEG", quality=92)
        images.append({"id": i + 1, "file_name": name, "height": image.height, "width": image.width})
        for shape, (x0, y0, x1, y1) in objects:
            annotations.append({"id": first_annotation + len(annotations), "image_id": i + 1,
                                "category_id": MLPERF_CLASSES.index(CLASS_OF[shape]), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        drawn.append((image, objects))
    write_split(root, split, list(MLPERF_CLASSES), images, annotations)
    return drawn


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Both splits, the backbone checkpoint, then the marker."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    drawn = write_images(root, "train", spec.train_images, rng, spec)
    write_images(root, "validation", spec.val_images, rng, spec)
    backbone = pretrain_backbone(root, drawn, spec)
    objects = sum(len(o) for _, o in drawn)
    return synthetic.write_marker(root, asdict(spec), backbone=str(backbone.relative_to(root)),
                                  classes=list(CLASS_OF.values()), train_objects=objects, num_classes=RULES.num_classes,
                                  mean_objects_per_image=round(objects / max(1, len(drawn)), 3))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())

