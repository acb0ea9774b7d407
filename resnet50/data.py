"""ImageNet in its raw folder layout: the dataset, its transforms and loaders.

Layout (the raw ImageNet release, validation sorted into class folders):
`<root>/train/<wnid>/*.JPEG` and `<root>/val/<wnid>/*.JPEG`; labels are
0-based in sorted wnid order.
ImageNet's quirks are handled by decoding with PIL and converting to RGB:
grayscale and CMYK JPEGs, and a PNG named `.JPEG`, all load.

Bad input fails naming the path and what was expected: when the dataset is
opened (before `run_start`), a missing split, images not sorted into class
folders (the raw validation release is flat), more class folders than the
model's classes, train/ and val/ with different classes, or a directory named
like an image; when an image is decoded (mid-run: opening reads only the
directory listings), a truncated, empty or undecodable file, or 16-bit/float
pixels (`ImageDataError`).

`resnet50.synthetic` writes a synthetic dataset in this layout.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms

from resnet50.config import steps_per_epoch

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# PIL modes of 8-bit pixels, which convert("RGB") maps exactly; 16-bit or float images (I;16, I, F) would clip.
EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr"}


class ImageDataError(ValueError):
    """An image file that cannot be decoded, or holds pixels the model's transforms do not expect."""


class ImageFolderDataset(Dataset):
    """One split of the ImageNet folder layout; decodes with PIL on access."""

    def __init__(self, root: Path, split: str, transform=None, max_classes: int = 1000):
        split_dir = Path(root) / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir}: missing; expected {split}/<wnid>/*.JPEG under {root}")
        entries = sorted(os.scandir(split_dir), key=lambda e: e.name)
        loose = [e.name for e in entries if not e.is_dir() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES]
        if loose:  # the raw validation release is flat: its images must first be sorted into class folders
            raise ValueError(f"{split_dir}: {len(loose)} images directly under it ({loose[0]}, ...), expected "
                             f"them in class folders {split}/<wnid>/*.JPEG")
        wnids = [e.name for e in entries if e.is_dir()]
        if not wnids:
            raise ValueError(f"{split_dir}: no class folders (<wnid>/) found")
        if len(wnids) > max_classes:
            raise ValueError(f"{split_dir}: {len(wnids)} class folders, the model has {max_classes} classes "
                             f"(labels 0-{max_classes - 1})")
        self.classes = wnids
        # Listing only: the entries' types come with the directory listing (no stat per image); sizes and
        # contents are checked when an image is decoded (load_rgb).
        self.samples = []
        for label, wnid in enumerate(wnids):
            for entry in sorted(os.scandir(split_dir / wnid), key=lambda e: e.name):
                if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if not entry.is_file():
                    raise ValueError(f"{entry.path}: not a regular file (a directory or a broken link), expected "
                                     f"a JPEG or PNG image")
                self.samples.append((Path(entry.path), label))
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
            if image.mode not in EIGHT_BIT_MODES:
                raise ImageDataError(f"{path}: {image.format} image of {image.mode} pixels, expected 8-bit "
                                     f"RGB, grayscale, CMYK or palette pixels (converting would clip them)")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        size = path.stat().st_size if path.is_file() else None
        raise ImageDataError(f"{path}: cannot decode image ({err}); expected a complete JPEG or PNG file, found "
                             f"{'no file' if size is None else f'{size} bytes'}") from None


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


class WholeEpochSampler(DistributedSampler):
    """`DistributedSampler` whose epoch is `steps_per_epoch` full global batches: the shuffled order is padded
    with its own first images up to steps x global batch (DistributedSampler pads only to a multiple of the
    ranks), so an epoch skips no image, as NVIDIA's rounded-up epochs; rank r takes every W-th index."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int, batch_size: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.num_samples = steps_per_epoch(len(dataset), batch_size * num_replicas) * batch_size
        self.total_size = self.num_samples * num_replicas


def build_loaders(root: Path, *, image_size: int, batch_size: int, eval_batch_size: int,
                  num_workers: int, rank: int, world_size: int, seed: int,
                  pin_memory: bool = False):
    """Train loader (sharded, shuffled, full batches, `steps_per_epoch` of them) and this rank's eval shard."""
    train_set = ImageFolderDataset(root, "train", train_transform(image_size))
    val_set = ImageFolderDataset(root, "val", eval_transform(image_size))
    if train_set.classes != val_set.classes:
        only_val = sorted(set(val_set.classes) - set(train_set.classes))
        only_train = sorted(set(train_set.classes) - set(val_set.classes))
        raise ValueError(f"{root}: train/ and val/ have different class folders (only in val/: {only_val[:5]}, "
                         f"only in train/: {only_train[:5]}); expected the same wnids, whose sorted order "
                         f"gives the labels")
    sampler = WholeEpochSampler(train_set, num_replicas=world_size, rank=rank, seed=seed, batch_size=batch_size)
    common = dict(num_workers=num_workers, pin_memory=pin_memory,
                  persistent_workers=num_workers > 0)
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, **common)
    # Every validation image is evaluated exactly once: rank r takes r, r+W, ...
    shard = torch.utils.data.Subset(val_set, range(rank, len(val_set), world_size))
    val = DataLoader(shard, batch_size=eval_batch_size, shuffle=False, **common)
    return train, val, len(train_set), len(val_set)


def to_device(batch, device: torch.device, channels_last: bool):
    """(images, labels) on the device, images in NHWC when channels_last (the layout the model runs in)."""
    images, labels = batch
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)
