"""A small, learnable detection set in the MLPerf OpenImages layout, and a backbone checkpoint to start from.

    python3 -m retinanet.synthetic DIR

Images (noisy backgrounds, 64-96 px) hold 1-2 drawn objects of four of the
264 classes — a red disk ("Apple"), an orange square ("Box"), a green
triangle ("Tent"), a blue 2:1 bar ("Flag") — with jittered colour, size and
place; boxes and labels go into `labels/openimages-mlperf.json` with all 264
categories, through `retinanet.data.write_split`, so the reader real runs use
is the one exercised. The split holds OpenImages' quirks: a grayscale JPEG, a
CMYK JPEG and a PNG named `.jpg`.

The rules start from an ImageNet-pretrained backbone; the synthetic flow makes
its own the same way: the configured backbone (torchvision's ResNet code,
trainable BatchNorm) is trained briefly, untimed, to classify object crops and
background, and saved in torchvision's state-dict layout under
`backbone/<name>-synthetic.pth` — the file `retinanet.train` loads, its
BatchNorm statistics becoming the detector's frozen ones. `SYNTHETIC.json`
(common.synthetic) marks the dataset.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image, ImageDraw

from common import synthetic
from common.precision import Precision
from common.step import TrainStep
from retinanet.config import MLPERF_CLASSES, RULES
from retinanet.data import BACKBONE_DIR, write_split

SHAPES = {"Apple": ("disk", (220, 40, 40)), "Box": ("square", (235, 140, 30)), "Tent": ("triangle", (40, 170, 60)),
          "Flag": ("bar", (40, 80, 220))}


@dataclass(frozen=True)
class SyntheticSpec:
    train_images: int = 384
    val_images: int = 96
    min_side: int = 64
    max_side: int = 96
    max_objects: int = 2
    object_min: float = 0.4  # object side as a fraction of the image's shorter side
    object_max: float = 0.75
    backbone: str = "resnet18"  # the debug model's; resnext50_32x4d for the full model
    pretrain_steps: int = 150
    crop_size: int = 48  # the backbone's pre-training crops
    seed: int = 0


def _object(rng: np.random.Generator, name: str, width: int, height: int, placed: list, spec):
    """(xyxy box, shape, colour) of one object that overlaps the placed ones by at most IoU 0.1."""
    shape, colour = SHAPES[name]
    for _ in range(50):
        side = rng.uniform(spec.object_min, spec.object_max) * min(width, height)
        w, h = (min(side * 1.6, width - 1), side * 0.8) if shape == "bar" else (side, side)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        box = (x0, y0, x0 + w, y0 + h)
        if all(_iou(box, other) < 0.1 for other in placed):
            jitter = rng.integers(-25, 26, 3)
            return box, shape, tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))
    return None


def _iou(a, b) -> float:
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def draw_image(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[Image.Image, list]:
    """One image and its [(class name, xyxy box)]."""
    width, height = (int(v) for v in rng.integers(spec.min_side, spec.max_side + 1, 2))
    base = rng.uniform(60, 190, 3)
    pixels = np.clip(base + rng.normal(0, 22, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        name = list(SHAPES)[int(rng.integers(len(SHAPES)))]
        drawn = _object(rng, name, width, height, [box for _, box in objects], spec)
        if drawn is None:
            continue
        (x0, y0, x1, y1), shape, colour = drawn
        if shape == "disk":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == "triangle":
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        objects.append((name, (x0, y0, x1, y1)))
    return image, objects


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
        for cls, (x0, y0, x1, y1) in objects:
            annotations.append({"id": first_annotation + len(annotations), "image_id": i + 1,
                                "category_id": MLPERF_CLASSES.index(cls), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        drawn.append((image, objects))
    write_split(root, split, list(MLPERF_CLASSES), images, annotations)
    return drawn


def crops(drawn: list, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object crops (with some context) labelled by class, and background crops labelled len(SHAPES)."""
    xs, ys = [], []
    for image, objects in drawn:
        rgb = image.convert("RGB")
        for name, (x0, y0, x1, y1) in objects:
            pad = 0.15 * max(x1 - x0, y1 - y0)
            xs.append(rgb.crop((x0 - pad, y0 - pad, x1 + pad, y1 + pad)).resize((size, size)))
            ys.append(list(SHAPES).index(name))
        w = int(rng.integers(16, min(rgb.size) // 2 + 1))
        x, y = int(rng.integers(0, rgb.width - w + 1)), int(rng.integers(0, rgb.height - w + 1))
        if all(_iou((x, y, x + w, y + w), box) < 0.05 for _, box in objects):
            xs.append(rgb.crop((x, y, x + w, y + w)).resize((size, size)))
            ys.append(len(SHAPES))
    images = torch.stack([torch.from_numpy(np.asarray(c, dtype=np.float32) / 255).permute(2, 0, 1) for c in xs])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return (images - mean[:, None, None]) / std[:, None, None], torch.tensor(ys)


def pretrain_backbone(root: Path, drawn: list, spec: SyntheticSpec) -> Path:
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
    path = root / BACKBONE_DIR / f"{spec.backbone}-synthetic.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    print(f"backbone: {spec.pretrain_steps} steps on {len(y)} crops in {time.perf_counter() - start:.0f} s, "
          f"mean loss {loss:.3f} -> {path}")
    return path


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Both splits, the backbone checkpoint, then the marker."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    drawn = write_images(root, "train", spec.train_images, rng, spec)
    write_images(root, "validation", spec.val_images, rng, spec)
    backbone = pretrain_backbone(root, drawn, spec)
    objects = sum(len(o) for _, o in drawn)
    return synthetic.write_marker(root, asdict(spec), backbone=str(backbone.relative_to(root)),
                                  classes=list(SHAPES), train_objects=objects, num_classes=RULES.num_classes,
                                  mean_objects_per_image=round(objects / max(1, len(drawn)), 3))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())

