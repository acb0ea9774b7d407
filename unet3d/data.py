"""Preprocessed KiTS19 in the MLPerf layout: one pair of numpy files per case.

    <root>/case_XXXXX_x.npy   float32 (1, D, H, W)  CT resampled to 1.6 x 1.2 x 1.2 mm, clipped, normalised
    <root>/case_XXXXX_y.npy   uint8   (1, D, H, W)  0 background, 1 kidney, 2 tumor

Cases 0-209 must all be there: the 42 of `config.VALIDATION_CASES` are
evaluated, the other 168 train. `read_split` checks every file's header before
a run starts (no data is read): a missing case or partner, a wrong dtype or
shape, a side shorter than the training patch, a file cut short, empty or a
directory is a `DataError` naming the file. A label outside 0-2 can only be
seen in the data: a case's whole label volume is checked when it is first
read (once per loader worker), a `DataError` mid-run. Volumes are
memory-mapped; a training sample is one patch (`RandBalancedCrop` of the
reference: with probability `oversampling` around one of the two largest
objects of a randomly chosen foreground class, otherwise anywhere), then the
reference's augmentations: a flip of each axis with probability 1/3, brightness
(probability 0.1) and Gaussian noise (probability 0.1). Every random draw of a
sample comes from (seed, epoch, case index) — `EpochSampler` hands the epoch
to the dataset — so a case gets the same patch however many ranks and loader
workers share the epoch.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from unet3d.config import RULES, VALIDATION_CASES

CASE_FILE = re.compile(r"case_(\d{5})_x\.npy")
LABEL_VALUES = 3  # 0 background, 1 kidney, 2 tumor


class DataError(ValueError):
    """A dataset file is missing, of the wrong kind, or corrupt."""


@dataclass(frozen=True)
class Case:
    id: int
    image: Path
    label: Path
    shape: tuple  # (D, H, W)

    @property
    def name(self) -> str:
        return f"case_{self.id:05d}"


def case_paths(root: Path, case_id: int) -> tuple[Path, Path]:
    return Path(root) / f"case_{case_id:05d}_x.npy", Path(root) / f"case_{case_id:05d}_y.npy"


def read_header(path: Path) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, bytes the whole file holds) from a .npy file's header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
        return tuple(shape), dtype, f.tell() + int(np.prod(shape)) * dtype.itemsize


def open_array(path: Path, dtype: np.dtype) -> np.ndarray:
    """The file memory-mapped, checked to be a (1, D, H, W) array of `dtype` that is all there (its header and
    size are checked before any data is mapped)."""
    path, expected = Path(path), f"a .npy file of {np.dtype(dtype)} (1, D, H, W)"
    if path.is_dir():
        raise DataError(f"{path}: a directory; expected {expected}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    if size == 0:
        raise DataError(f"{path}: empty (0 bytes); expected {expected}")
    try:
        shape, stored, whole = read_header(path)
    except (ValueError, OSError, EOFError) as e:  # a header cut short, or not a .npy file at all
        raise DataError(f"{path}: not a complete .npy file ({e}); truncated or corrupt, expected {expected}") from e
    if stored != dtype or len(shape) != 4 or shape[0] != 1:
        raise DataError(f"{path}: {stored} {shape}; expected {np.dtype(dtype)} (1, D, H, W)")
    if size < whole:
        raise DataError(f"{path}: not a complete .npy file ({size} bytes, its header's {stored} {shape} needs "
                        f"{whole}); truncated or corrupt")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a complete .npy file ({e}); truncated or corrupt") from e


def check_labels(path: Path, label: np.ndarray) -> None:
    """Every voxel of a label volume is a class (reads the volume whole: once per case and loader worker)."""
    if label.max(initial=0) >= LABEL_VALUES:
        voxel = tuple(int(i) for i in np.argwhere(np.asarray(label) >= LABEL_VALUES)[0])
        raise DataError(f"{path}: label {int(label[voxel])} at voxel {voxel}; expected 0 (background), 1 (kidney), "
                        "2 (tumor)")


def read_case(root: Path, case_id: int, min_side: int = 1) -> Case:
    image_path, label_path = case_paths(root, case_id)
    image, label = open_array(image_path, np.float32), open_array(label_path, np.uint8)
    if image.shape != label.shape:
        raise DataError(f"{label_path}: shape {label.shape} differs from {image_path.name}'s {image.shape}")
    if min(image.shape[1:]) < min_side:
        raise DataError(f"{image_path}: shape {image.shape}; every side must be >= {min_side}, the training patch "
                        f"(the preprocessing pads to {RULES.min_shape})")
    return Case(case_id, image_path, label_path, tuple(image.shape[1:]))


def read_split(root: Path, min_side: int = 1) -> tuple[list[Case], list[Case]]:
    """(training cases, validation cases) of the dataset in `root`, each checked (module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory; expected the preprocessed KiTS19 cases (case_XXXXX_x.npy)")
    ids = sorted(int(m.group(1)) for m in map(CASE_FILE.fullmatch, os.listdir(root)) if m)
    if not ids:
        raise DataError(f"{root}: no case_XXXXX_x.npy files; run `python3 -m unet3d.preprocess` on raw KiTS19 first")
    validation = set(VALIDATION_CASES)
    missing, extra = sorted(set(range(RULES.num_cases)) - set(ids)), sorted(set(ids) - set(range(RULES.num_cases)))
    if missing or extra:
        names = lambda ids: ", ".join(f"{i:05d}" for i in ids[:10]) + (" ..." if len(ids) > 10 else "")  # noqa: E731
        raise DataError(f"{root}: " + "; ".join(
            ([f"case(s) {names(missing)} missing"] if missing else []) +
            ([f"case(s) {names(extra)} beyond KiTS19's labelled 0-{RULES.num_cases - 1}"] if extra else [])) +
            f"; expected case_XXXXX_x.npy and _y.npy for cases 0-{RULES.num_cases - 1} (168 train, 42 validation)" +
            (f"; missing: {len(set(missing) & validation)} of the {len(validation)} validation cases "
             f"(config.VALIDATION_CASES), {len(set(missing) - validation)} of the "
             f"{RULES.num_cases - len(validation)} training cases" if missing else ""))
    cases = [read_case(root, i, min_side) for i in ids]
    return [c for c in cases if c.id not in validation], [c for c in cases if c.id in validation]


def write_case(root: Path, case_id: int, image: np.ndarray, label: np.ndarray) -> None:
    """Both files of a case, each written whole or not at all (a temporary file renamed into place), label last."""
    if image.dtype != np.float32 or label.dtype != np.uint8 or image.shape != label.shape or image.ndim != 4:
        raise ValueError(f"case {case_id}: image {image.dtype} {image.shape}, label {label.dtype} {label.shape}; "
                         "expected float32 and uint8 of one (1, D, H, W) shape")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for array, path in zip((image, label), case_paths(root, case_id)):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        tmp.replace(path)


# --- training patches: the reference's RandBalancedCrop and augmentations ---

def random_crop(shape: tuple, patch: int, rng: np.random.Generator) -> tuple[slice, ...]:
    # The reference's randrange(s - patch): the last start position s - patch is never drawn (0 when s == patch).
    return tuple(slice(start, start + patch)
                 for start in (int(rng.integers(0, s - patch)) if s > patch else 0 for s in shape))


def _fit(start: int, stop: int, size: int, patch: int, rng: np.random.Generator) -> slice:
    """Grow (or shrink) [start, stop) to `patch` voxels, split at random between the two ends, kept inside."""
    diff = patch - (stop - start)
    take = int(rng.integers(0, abs(diff))) if diff else 0
    if diff >= 0:
        low, high = max(0, start - take), min(size, stop + diff - take)
    else:
        low, high = start + take, stop - (-diff - take)
    short = patch - (high - low)  # clipped at a border: move the window inwards
    if short > 0:
        if low == 0:
            high += short
        else:
            low -= short
    return slice(low, high)


def largest_objects(label: np.ndarray) -> dict[int, list[tuple[slice, ...]]]:
    """Per foreground class of the case, the bounding boxes of its two largest connected objects (by box volume):
    where a foreground patch may be centred. Depends on the label only, so it is computed once per case."""
    objects = {}
    for cls in np.unique(label[label > 0]).tolist():
        components, _ = scipy.ndimage.label(label == cls)
        boxes = [b for b in scipy.ndimage.find_objects(components) if b is not None]
        volumes = [np.prod([s.stop - s.start for s in box]) for box in boxes]
        objects[cls] = [boxes[i] for i in np.argsort(volumes, kind="stable")[-2:]]
    return objects


def foreground_crop(objects: dict, shape: tuple, patch: int, rng: np.random.Generator) -> tuple[slice, ...] | None:
    """A patch around one of the `largest_objects` of a random foreground class; None when the case has none."""
    if not objects:
        return None
    largest = objects[int(rng.choice(sorted(objects)))]
    box = largest[int(rng.integers(0, len(largest)))]
    return tuple(_fit(s.start, s.stop, size, patch, rng) for s, size in zip(box, shape))


def augment(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The reference's training transforms, in its order: flips, brightness, noise."""
    for axis in range(3):
        if rng.random() < 1 / 3:
            image, label = np.flip(image, axis), np.flip(label, axis)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if rng.random() < 0.1:
        # The reference scales by 1 + U(0.7, 1.3), i.e. by 1.7-2.3 (its factor 0.3 is added to 1 twice).
        image = image * np.float32(1 + rng.uniform(1 - 0.3, 1 + 0.3))
    if rng.random() < 0.1:
        image = image + rng.normal(0.0, rng.uniform(0.0, 0.1), image.shape).astype(np.float32)
    return image, np.ascontiguousarray(label)


class EpochSampler(DistributedSampler):
    """DistributedSampler whose items are (case index, epoch), so that a sample's random draws can depend on both."""

    def __iter__(self):
        return ((index, self.epoch) for index in super().__iter__())


class TrainPatches(Dataset):
    """One augmented patch per case and epoch; items are (case index, epoch) from `EpochSampler`."""

    def __init__(self, cases: list[Case], patch: int, oversampling: float, seed: int):
        self.cases, self.patch, self.oversampling, self.seed = cases, patch, oversampling, seed
        self._objects: dict[int, dict] = {}  # per loader worker: case index -> largest_objects
        self._checked: set[int] = set()  # per loader worker: cases whose labels `check_labels` passed

    def objects(self, index: int) -> dict:
        if index not in self._objects:
            self._objects[index] = largest_objects(np.asarray(open_array(self.cases[index].label, np.uint8)[0]))
        return self._objects[index]

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch = item
        case = self.cases[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        image, label = open_array(case.image, np.float32)[0], open_array(case.label, np.uint8)[0]
        if index not in self._checked:
            check_labels(case.label, label)
            self._checked.add(index)
        window = None
        if rng.random() < self.oversampling:
            window = foreground_crop(self.objects(index), case.shape, self.patch, rng)
        if window is None:
            window = random_crop(case.shape, self.patch, rng)
        image, label = augment(image[window], label[window], rng)
        return torch.from_numpy(image[None]), torch.from_numpy(label[None])


class EvalVolumes(Dataset):
    """Whole validation volumes, (1, D, H, W) image and label."""

    def __init__(self, cases: list[Case]):
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.cases[index]
        image, label = open_array(case.image, np.float32), np.array(open_array(case.label, np.uint8))
        check_labels(case.label, label)
        return torch.from_numpy(np.array(image)), torch.from_numpy(label)


def build_loaders(root: Path, *, patch: int, batch_size: int, num_workers: int, rank: int, world_size: int,
                  seed: int, pin_memory: bool = False):
    """(training loader, this rank's evaluation loader, training cases, validation cases).

    Training drops the last incomplete global batch (the reference's drop_last); evaluation gives each rank
    its `balanced_shards` share of the validation cases, one volume at a time.
    """
    train, val = read_split(root, min_side=patch)
    train_set = TrainPatches(train, patch, RULES.oversampling, seed)
    sampler = EpochSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    common = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, **common)
    shard = Subset(EvalVolumes(val), balanced_shards(val, world_size)[rank])
    return train_loader, DataLoader(shard, batch_size=1, shuffle=False, **common), train, val


def balanced_shards(cases: list[Case], world_size: int) -> list[list[int]]:
    """The validation cases dealt to ranks by size (largest first, each to the least-loaded rank), so that the
    rank with the most voxels to infer — which every rank waits for — has as few as possible."""
    shards, loads = [[] for _ in range(world_size)], [0] * world_size
    for index in sorted(range(len(cases)), key=lambda i: -int(np.prod(cases[i].shape))):
        rank = loads.index(min(loads))
        shards[rank].append(index)
        loads[rank] += int(np.prod(cases[index].shape))
    return [sorted(shard) for shard in shards]


def to_device(batch, device: torch.device):
    image, label = batch
    return image.to(device, non_blocking=True), label.to(device, non_blocking=True)
