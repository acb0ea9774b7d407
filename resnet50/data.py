"""ImageNet in its raw folder layout, and a synthetic dataset written in that same layout.

Layout (the raw ImageNet release, validation sorted into class folders): `<root>/train/<wnid>/*.JPEG` and `<root>/val/<wnid>/*.JPEG`
(validation sorted into wnid folders); labels are 0-based in sorted wnid order.
ImageNet's quirks are handled by decoding with PIL and converting to RGB:
grayscale and CMYK JPEGs, and a PNG named `.JPEG`, all load.

    python3 -m resnet50.data synthesize DIR   # write the synthetic dataset
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
SYNTHETIC_MARKER = "SYNTHETIC.json"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ImageFolderDataset(Dataset):
    """One split of the ImageNet folder layout; decodes with PIL on access."""

    def __init__(self, root: Path, split: str, transform=None, max_classes: int = 1000):
        split_dir = Path(root) / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: missing; expected {split}/<wnid>/*.JPEG under {root}")
        wnids = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        if not wnids:
            raise ValueError(f"{split_dir}: no class folders (<wnid>/) found")
        if len(wnids) > max_classes:
            raise ValueError(f"{split_dir}: {len(wnids)} class folders, the model has {max_classes} classes")
        self.classes = wnids
        self.samples = [(path, label) for label, wnid in enumerate(wnids)
                        for path in sorted((split_dir / wnid).iterdir())
                        if path.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise ValueError(f"{split_dir}: no image files")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = load_rgb(path)
        return (self.transform(image) if self.transform else image), label


def load_rgb(path: Path) -> Image.Image:
    """Decode by content (not by suffix) and convert grayscale/CMYK/palette to RGB."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: cannot decode image ({err})") from None


def train_transform(size: int):
    return transforms.Compose([
        transforms.RandomResizedCrop(size, antialias=True),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def eval_transform(size: int):
    # Standard ImageNet eval: resize the short side to size/0.875 (256 for 224), center crop.
    return transforms.Compose([
        transforms.Resize(round(size / 0.875), antialias=True),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def is_synthetic(root: Path) -> bool:
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def build_loaders(root: Path, *, image_size: int, batch_size: int, eval_batch_size: int,
                  num_workers: int, rank: int, world_size: int, seed: int,
                  pin_memory: bool = False):
    """Train loader (sharded, shuffled, full batches) and this rank's eval shard."""
    train_set = ImageFolderDataset(root, "train", train_transform(image_size))
    val_set = ImageFolderDataset(root, "val", eval_transform(image_size))
    if train_set.classes != val_set.classes:
        raise ValueError(f"{root}: train/ and val/ have different class folders")
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank,
                                 shuffle=True, seed=seed, drop_last=True)
    common = dict(num_workers=num_workers, pin_memory=pin_memory,
                  persistent_workers=num_workers > 0)
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, **common)
    # Every validation image is evaluated exactly once: rank r takes r, r+W, ...
    shard = torch.utils.data.Subset(val_set, range(rank, len(val_set), world_size))
    val = DataLoader(shard, batch_size=eval_batch_size, shuffle=False, **common)
    return train, val, len(train_set), len(val_set)


# ---------------------------------------------------------------- synthetic data

def _class_image(rng: np.random.Generator, label: int, num_classes: int) -> np.ndarray:
    """A class = a hue plus a stripe orientation; size, phase, frequency and noise vary."""
    height, width = rng.integers(72, 129, size=2)
    hue = label / num_classes
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    angle = math.pi * label / num_classes
    freq = rng.uniform(0.15, 0.25)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * math.pi))
    base = np.array([red, green, blue]) * 255
    image = base[None, None, :] * (0.75 + 0.25 * stripes[..., None])
    image += rng.normal(0, 25, size=image.shape)  # pixel noise keeps the task from being trivial
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic(root: Path, *, num_classes: int = 10, train_per_class: int = 32,
                    val_per_class: int = 24, val_label_noise: float = 0.05, seed: int = 0) -> None:
    """Write a small learnable dataset in the ImageNet folder layout.

    A fraction `val_label_noise` of validation images is drawn from another
    class, so top-1 tops out near 1 - noise: the target (0.759) is reachable
    but 1.0 (which the checker rejects) is not. The set includes ImageNet's
    quirks: grayscale and CMYK JPEGs and a PNG named `.JPEG`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = [f"n{10000000 + 1111 * k:08d}" for k in range(num_classes)]
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                drawn = label
                if split == "val" and rng.random() < val_label_noise:
                    drawn = (label + rng.integers(1, num_classes)) % num_classes
                image = Image.fromarray(_class_image(rng, drawn, num_classes))
                path = folder / f"{wnid}_{i:05d}.JPEG"
                if i == 0 and label == 0 and split == "train":
                    image.save(path, format="PNG")  # ImageNet has one PNG named .JPEG
                elif i % 16 == 1:
                    image.convert("CMYK").save(path, format="JPEG", quality=90)
                elif i % 32 == 2:
                    image.convert("L").save(path, format="JPEG", quality=90)
                else:
                    image.save(path, format="JPEG", quality=90)
    meta = dict(generator="resnet50.data.write_synthetic", num_classes=num_classes,
                train_per_class=train_per_class, val_per_class=val_per_class,
                val_label_noise=val_label_noise, seed=seed)
    (root / SYNTHETIC_MARKER).write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synthesize", help="write the synthetic ImageNet-layout dataset")
    synth.add_argument("root", type=Path)
    synth.add_argument("--num-classes", type=int, default=10)
    synth.add_argument("--train-per-class", type=int, default=32)
    synth.add_argument("--val-per-class", type=int, default=24)
    synth.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if is_synthetic(args.root):
        print(f"synthetic dataset already in {args.root}")
        return
    write_synthetic(args.root, num_classes=args.num_classes, train_per_class=args.train_per_class,
                    val_per_class=args.val_per_class, seed=args.seed)
    print(f"wrote synthetic ImageNet-layout dataset to {args.root}")


if __name__ == "__main__":
    main()
