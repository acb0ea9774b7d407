"""What the two COCO-style detection benchmarks (retinanet, maskrcnn) share at run time.

- `float32_box_math`: anchors and box decoding in float32 under bf16 autocast.
- `load_backbone`: ImageNet weights in torchvision's state-dict layout into a
  detector's ResNet body, every key and shape checked (`BackboneError`);
  `find_backbone` picks the one `<DATADIR>/backbone/*.pth`.
- `read_json`, `image_entry`, `bbox_of`, `check_image_dir`: an annotation
  file's json, its image entries, boxes and image folder, checked before a run
  starts (`DataError` names the file and what it should hold).
- `load_rgb`: an image decoded by content and converted to RGB, its pixels and
  size checked against the annotation file (`DataError` names the file).
- `image_tensor`, `flip_boxes`: an image as a [3, H, W] uint8 tensor, boxes
  mirrored with it.
- `loaders`, `FlipSampler`, `collate`, `to_device`: the training loader over a
  rank's share with the reference's only augmentation (horizontal flip, p 0.5)
  drawn per epoch for the whole dataset, the evaluation loader over a rank's
  shard, lists of images and target dicts, uint8 -> float on the device;
  `steps_per_epoch`: the training loader's length, from the sizes alone
  (`checked_steps_per_epoch` checks a loader against it).
- `gather_on_rank0`, `coco_eval`: every rank's COCO results on rank 0 in
  one gather, scored there by pycocotools' COCOeval (or, as a configured fast
  path, faster-coco-eval's drop-in).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator

BACKBONE_DIR = "backbone"  # <root>/backbone/<name>.pth: the ImageNet-pretrained backbone a run starts from
# PIL modes of 8-bit (or bilevel) pixels, which convert to RGB as they are; 16-bit ("I;16", "I") and float ("F")
# images would be clipped to 0..255 without a word
IMAGE_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


class Float32Anchors(AnchorGenerator):
    """torchvision's anchors, always in float32.

    `AnchorGenerator` takes its dtype from the feature maps: bf16 under
    autocast, whose 8-bit mantissa spaces representable coordinates 4 px
    apart between 512 and 1024 and 8 px above — at 800 x 1333 the anchors,
    proposals and detections would be rounded by up to 4 px.
    """

    def forward(self, image_list, feature_maps):
        shapes = [torch.empty(f.shape[-2:], dtype=torch.float32, device=f.device) for f in feature_maps]
        return super().forward(image_list, shapes)


class Float32BoxCoder(BoxCoder):
    """torchvision's box coder decoding in float32 whatever the dtype of the regression (bf16 under autocast)."""

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return super().decode_single(rel_codes.float(), boxes.float())


def float32_box_math(anchor_generator: AnchorGenerator, *box_coders: BoxCoder) -> None:
    """Make a detector's anchors and box decoding float32 (`Float32Anchors`, `Float32BoxCoder`) in place.

    The classes add behaviour and no state; in float32 runs nothing changes.
    """
    anchor_generator.__class__ = Float32Anchors
    for coder in box_coders:
        coder.__class__ = Float32BoxCoder


class DataError(ValueError):
    """A data file is missing, unreadable or not in the expected layout."""


class BackboneError(ValueError):
    """A backbone checkpoint is missing or does not fit the backbone."""


def find_backbone(data_dir: Path, override: Path | None = None) -> Path:
    """`override`, or the single `<data_dir>/backbone/*.pth`."""
    if override:
        return Path(override)
    found = sorted((Path(data_dir) / BACKBONE_DIR).glob("*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one {Path(data_dir) / BACKBONE_DIR}/*.pth (found {len(found)}); "
                                "pass --backbone-checkpoint")
    return found[0]


def load_backbone(body: nn.Module, path: Path) -> None:
    """ImageNet weights in torchvision's layout (e.g. `resnet50-0676ba61.pth`) into a detector's ResNet `body`.

    The classifier (`fc.*`) is not part of the detector; any other missing,
    unexpected, mis-shaped or integer tensor is an error naming the file and
    the key, as is an empty, cut or non-torch file.
    """
    path = Path(path)
    expected = "expected torch.save of a torchvision ResNet's state_dict (the backbone's ImageNet weights)"
    if not path.exists():
        raise BackboneError(f"backbone checkpoint {path} does not exist")
    if not path.is_file():
        raise BackboneError(f"{path}: {'a directory' if path.is_dir() else 'not a regular file'}, not a file; "
                            f"{expected}")
    if path.stat().st_size == 0:
        raise BackboneError(f"{path}: empty (0 bytes); {expected}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or non-torch file
        raise BackboneError(f"{path}: not a readable state dict ({e}); {expected}") from e
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: holds a {type(state).__name__}, not a state dict; {expected}")
    want = body.state_dict()
    have = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing:
        raise BackboneError(f"{path}: missing backbone key {missing[0]!r} ({len(missing)} missing); expected "
                            f"torchvision's {type(body).__name__} layout of the configured backbone")
    if unexpected:
        raise BackboneError(f"{path}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for key, tensor in want.items():
        if not torch.is_tensor(have[key]):
            raise BackboneError(f"{path}: {key!r} holds a {type(have[key]).__name__}, expected a tensor")
        if tuple(have[key].shape) != tuple(tensor.shape):
            raise BackboneError(f"{path}: {key!r} has shape {tuple(have[key].shape)}, the backbone's is "
                                f"{tuple(tensor.shape)}")
        if tensor.is_floating_point() and not have[key].is_floating_point():  # fp16/bf16 weights convert
            raise BackboneError(f"{path}: {key!r} holds {have[key].dtype} values, expected floating point "
                                f"({tensor.dtype})")
    with torch.no_grad():
        for key, tensor in want.items():
            tensor.copy_(have[key])


def image_tensor(path: Path, image_id, width: int, height: int, annotation_ids: Sequence = ()) -> torch.Tensor:
    """The image at `path` as a [3, H, W] uint8 tensor (`load_rgb`'s checks)."""
    rgb = load_rgb(path, image_id, width, height, annotation_ids)
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


def flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """xyxy boxes of an image `width` pixels wide, mirrored left to right."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def load_rgb(path: Path, image_id, width: int, height: int, annotation_ids: Sequence = ()) -> Image.Image:
    """The image at `path` as RGB (grayscale, CMYK and a PNG named .jpg all load), checked to be width x height.

    A missing, empty, cut or undecodable file, a directory in its place, or
    16-bit or float pixels are a `DataError` naming the file and the image the
    annotations expect there; images are opened lazily, during the run.
    """
    expected = f"expected a JPEG or PNG of {width}x{height} 8-bit pixels"
    try:
        with Image.open(path) as image:
            if image.mode not in IMAGE_MODES:
                raise DataError(f"{path}: holds {image.mode} pixels (image {image_id}), {expected}")
            rgb = image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: missing (image {image_id}, annotations {list(annotation_ids)}); {expected}") \
            from None
    except IsADirectoryError:
        raise DataError(f"{path}: a directory, not a file (image {image_id}); {expected}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise DataError(f"{path}: empty (0 bytes) (image {image_id}); {expected}") from None
        raise DataError(f"{path}: cannot decode image {image_id} ({e}); {expected}") from None
    if rgb.size != (width, height):
        raise DataError(f"{path}: is {rgb.size[0]}x{rgb.size[1]}, the annotations say {width}x{height}")
    return rgb


def read_json(path: Path, expected: str) -> dict:
    """The json object in the annotation file `path`; `expected` says what it should be, for the `DataError` of a
    missing, unreadable, empty, cut or corrupt file or a directory in its place."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a directory, not a file; expected {expected}")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected {expected}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e}); expected {expected}") from None
    if not text:
        raise DataError(f"{path}: empty (0 bytes); expected {expected}")
    try:
        content = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not readable json ({e}); truncated or corrupt, expected {expected}") from e
    if not isinstance(content, dict):
        raise DataError(f"{path}: holds a json {type(content).__name__}, expected {expected}")
    return content


def image_entry(path: Path, image) -> tuple[str, int, int]:
    """(file_name, height, width) of one entry of the annotation file's `images`, or a `DataError` naming it."""
    fields = ("id", "file_name", "height", "width")
    image_id = image.get("id") if isinstance(image, dict) else None
    if not isinstance(image, dict) or not set(fields) <= set(image):
        lacking = [f for f in fields if f not in image] if isinstance(image, dict) else list(fields)
        raise DataError(f"{path}: image {image_id!r} lacks id/file_name/height/width (no {', '.join(lacking)})")
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        raise DataError(f"{path}: image {image_id!r} has file_name {image['file_name']!r}, expected a file name")
    for side in ("height", "width"):
        value = image[side]
        whole = not isinstance(value, bool) and (isinstance(value, int)
                                                 or isinstance(value, float) and value.is_integer())
        if not whole or value <= 0:
            raise DataError(f"{path}: image {image_id!r} has {side} {value!r}, expected a positive integer (pixels)")
    return image["file_name"], int(image["height"]), int(image["width"])


def bbox_of(path: Path, ann: dict) -> tuple[float, float, float, float]:
    """The [x, y, w, h] of an annotation as 4 finite floats, or a `DataError` naming the file and the annotation."""
    bbox = ann.get("bbox")
    try:
        if not isinstance(bbox, (list, tuple)):
            raise TypeError(bbox)
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"{path}: annotation {ann.get('id')} has bbox {bbox!r}, expected [x, y, w, h] "
                        f"(4 numbers)") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DataError(f"{path}: annotation {ann.get('id')} has bbox {bbox!r}, expected 4 finite numbers")
    return x, y, w, h


def check_image_dir(folder: Path, labels_json: Path, images: int) -> None:
    """The folder the annotation file's images are in exists (each image is opened during the run)."""
    folder = Path(folder)
    if not folder.is_dir():
        state = "not a directory" if folder.exists() else "missing"
        raise DataError(f"{folder}: {state}; expected the folder of the {images} images {labels_json} lists")


class Records(Dataset):
    """A dataset over a list of image records; items are an index or (index, flip), as `FlipSampler` yields."""

    def __init__(self, records: list):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def record(self, item) -> tuple:
        """(the record, whether to flip it) of an item."""
        index, flip = item if isinstance(item, tuple) else (item, False)
        return self.records[index], flip


class FlipSampler(DistributedSampler):
    """DistributedSampler whose items carry a horizontal flip (probability 0.5, the references' augmentation).

    The flips are drawn per epoch for the whole dataset from (seed, epoch), in
    the main process: an image gets the same flip however many ranks and
    loader workers share the epoch, so runs of different sizes see the same data.
    """

    def __iter__(self):
        flips = torch.rand(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch)) < 0.5
        return ((index, bool(flips[index])) for index in super().__iter__())


def loaders(train_set: Dataset, eval_set: Dataset, *, batch_size: int, eval_batch_size: int, num_workers: int,
            rank: int, world_size: int, seed: int, pin_memory: bool = False) -> tuple[DataLoader, DataLoader]:
    """(training loader over this rank's share, flips drawn by `FlipSampler`; this rank's evaluation loader).

    Training drops the last incomplete global batch; evaluation covers every
    image once, unflipped, rank r taking images r, r + world_size, ...
    """
    sampler = FlipSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    common = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0,
                  collate_fn=collate)
    train_loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, **common)
    shard = Subset(eval_set, range(rank, len(eval_set), world_size))
    return train_loader, DataLoader(shard, batch_size=eval_batch_size, shuffle=False, **common)


def steps_per_epoch(train_images: int, global_batch: int) -> int:
    """Optimizer steps of one epoch of `loaders`' training loader: the last incomplete global batch is dropped.

    Each rank's sampler keeps floor(images / ranks) and its loader floor(that / batch) batches, which is
    floor(images / global batch) for any split of the global batch; a run checks its loader against this.
    """
    return train_images // global_batch


def checked_steps_per_epoch(train_loader: DataLoader, train_images: int, global_batch: int) -> int:
    """`steps_per_epoch`, which a run's plan schedules from, after checking the training loader has as many."""
    steps = steps_per_epoch(train_images, global_batch)
    if len(train_loader) != steps:
        raise RuntimeError(f"the train loader has {len(train_loader)} steps per epoch, the plan {steps}")
    return steps


def collate(batch):
    images, targets = zip(*batch)
    return list(images), list(targets)


def to_device(batch, device: torch.device):
    """Images as float in [0, 1] on the device (the uint8 copy is 4x smaller), targets alongside."""
    images, targets = batch
    images = [image.to(device, non_blocking=True).float().div_(255) for image in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def gather_on_rank0(results: list[dict]) -> list[dict] | None:
    """Every rank's COCO results on rank 0 (None elsewhere), in one `gather_object` of each rank's list.

    NVIDIA's v3.0 maskrcnn (coco_eval.py) instead json-dumps each result on
    its rank, joins the strings and gathers the bytes as a tensor, then splits
    and de-duplicates them on rank 0. Measured here (`maskrcnn/bench.py
    --gather`, docs/perf/maskrcnn_gather.md) on val2017-sized results, Python's
    pickle of the dicts is both faster and smaller than one JSON string, so
    the list is pickled; no de-duplication is needed, the evaluation shards
    cover each image exactly once (`loaders`), where NVIDIA's padded sampler
    repeats some.
    """
    if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
        return results
    gathered = [None] * torch_dist.get_world_size() if torch_dist.get_rank() == 0 else None
    torch_dist.gather_object(results, gathered, dst=0)
    return [r for part in gathered for r in part] if gathered is not None else None


COCO_EVAL_BACKENDS = ("pycocotools", "faster")


def load_truth(labels_json: Path, backend: str = "pycocotools"):
    """The ground truth of `labels_json` as the backend's COCO object (pycocotools, or faster-coco-eval's)."""
    if backend == "faster":
        from faster_coco_eval import COCO  # the fast path: imported only when configured
    elif backend == "pycocotools":
        from pycocotools.coco import COCO
    else:
        raise ValueError(f"COCO evaluation backend {backend!r}: expected one of {', '.join(COCO_EVAL_BACKENDS)}")
    with contextlib.redirect_stdout(io.StringIO()):  # both print their progress
        return COCO(str(labels_json))


def coco_eval(labels_json: Path, results: Mapping[str, list[dict]], truth=None,
              backend: str = "pycocotools") -> dict[str, float]:
    """AP@[.5:.95] (COCOeval stats[0]) per IoU type of `results` ({"bbox": [...], "segm": [...]}).

    Each type's results are scored apart, as the references do (the loader
    derives a segm result's area and box from its mask). `backend`:
    "pycocotools" (the references' COCOeval) or "faster" (faster-coco-eval's
    `COCOeval_faster`, a C++ drop-in; the same AP on the tests' cases).
    `truth`: an already loaded ground truth of the same backend
    (`load_truth`; val2017's takes seconds to load).
    """
    if backend == "faster":
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.cocoeval import COCOeval

    truth = truth if truth is not None else load_truth(labels_json, backend)
    scores = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for iou_type, found in results.items():
            if not found:
                scores[iou_type] = 0.0
                continue
            evaluation = COCOeval(truth, truth.loadRes(found), iouType=iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            scores[iou_type] = float(evaluation.stats[0])
    return scores


def broadcast_scores(scores: dict[str, float] | None, names: Sequence[str], device: torch.device) -> dict:
    """Rank 0's `scores` (None on the other ranks) on every rank, in the order of `names`."""
    value = torch.tensor([scores[n] if scores is not None else 0.0 for n in names], dtype=torch.float64,
                         device=device)
    if torch_dist.is_initialized():
        torch_dist.broadcast(value, src=0)
    return dict(zip(names, value.tolist()))
