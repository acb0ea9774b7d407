"""COCO 2017 in its on-disk layout: instances json + JPEG files, polygon masks and crowd RLE.

    <root>/train2017/<id>.jpg, <root>/val2017/<id>.jpg
    <root>/annotations/instances_{train,val}2017.json
        categories  [{id, name, supercategory}]: the 80 COCO categories, ids 1..90 with gaps
        images      [{id, file_name, height, width}]
        annotations [{id, image_id, category_id, bbox [x, y, w, h], area, iscrowd,
                      segmentation: [[x1, y1, x2, y2, ...], ...] polygons, or {size, counts} RLE (crowds)}]

`read_split` checks the json against itself before a run starts: a missing,
empty, cut or non-json file, an image entry without a file name or
whole-pixel sizes, an annotation whose image is not listed, whose category is
not one of the file's, whose bbox is not 4 numbers or leaves its image, or
whose polygon has fewer than 3 points is a `DataError` naming the json file
and the annotation id; so is a split without its image folder. A missing,
empty, undecodable or 16-bit image is found when it is read, during the run
(`common.detection.load_rgb`). Category ids map onto the model's contiguous
labels 1..80 in id order (0 is background).

As the reference (maskrcnn-benchmark's COCODataset) does for training:
images without a usable annotation (none, or every box at most 1 px wide or
tall) are skipped; crowd annotations (iscrowd 1, RLE) are not targets; boxes
at most 1 px wide or tall are dropped. Validation keeps every image. Training
flips horizontally with probability 0.5 (`common.detection.FlipSampler`), the
only augmentation; the model resizes (shorter side 800, longer at most 1333)
and pads to a multiple of 32 itself. Masks are decoded with pycocotools to
[n, H, W] uint8 at the image's size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import detection
from common.detection import DataError, to_device  # noqa: F401  (the reader's API)

SPLITS = {"train": "train2017", "val": "val2017"}
BOX_TOLERANCE = 1.0  # pixels a box may pass the image's edge by (float rounding in the annotation tools)
MIN_BOX_SIDE = 1.0  # the reference drops boxes at most 1 px wide or tall from training targets


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray  # [n, 4] float32 xyxy, pixels
    labels: np.ndarray  # [n] int64, contiguous 1..80
    crowd: np.ndarray  # [n] bool
    segmentations: tuple  # per annotation: a list of polygons or an RLE dict
    annotation_ids: tuple

    def wide_enough(self) -> np.ndarray:
        """Per annotation: its box is wider and taller than 1 px."""
        return (self.boxes[:, 2:] - self.boxes[:, :2] > MIN_BOX_SIDE).all(axis=1)

    def trainable(self) -> np.ndarray:
        """The annotations that are training targets: not crowds, wider and taller than 1 px."""
        return ~self.crowd & self.wide_enough()


def labels_path(root: Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{SPLITS[split]}.json"


def image_dir(root: Path, split: str) -> Path:
    return Path(root) / SPLITS[split]


def category_ids(path: Path, content: dict, num_classes: int) -> dict[int, int]:
    """COCO category id -> contiguous label 1..num_classes-1, in id order."""
    ids = sorted({c.get("id") for c in content["categories"]}, key=lambda v: (not isinstance(v, int), v))
    if len(ids) != num_classes - 1 or not all(isinstance(i, int) for i in ids):
        raise DataError(f"{path}: expected {num_classes - 1} categories with integer ids, found {len(ids)}")
    return {coco_id: label for label, coco_id in enumerate(ids, start=1)}


def read_split(root: Path, split: str, num_classes: int) -> tuple[list[ImageRecord], dict[int, int]]:
    """(every image of the split with its annotations, category id -> label), checked (see the module docstring)."""
    path = labels_path(root, split)
    content = detection.read_json(path, f"annotations/instances_{SPLITS[split]}.json under {root}, COCO instances "
                                        f"json")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise DataError(f"{path}: no '{key}' list (COCO instances format expected)")
    labels = category_ids(path, content, num_classes)
    images = {image.get("id") if isinstance(image, dict) else None: detection.image_entry(path, image)
              for image in content["images"]}
    per_image: dict[int, list] = {i: [] for i in images}
    for ann in content["annotations"]:
        per_image.setdefault(ann.get("image_id"), []).append(_checked(path, ann, images, labels))
    folder = image_dir(root, split)
    detection.check_image_dir(folder, path, len(images))
    records = []
    for image_id, (file_name, height, width) in images.items():
        anns = per_image[image_id]
        records.append(ImageRecord(
            image_id, folder / file_name, height, width, np.array([a[1] for a in anns], np.float32).reshape(-1, 4),
            np.array([a[2] for a in anns], np.int64), np.array([a[3] for a in anns], bool),
            tuple(a[4] for a in anns), tuple(a[0] for a in anns)))
    return records, labels


def _checked(path: Path, ann: dict, images: dict, labels: dict) -> tuple:
    """(annotation id, xyxy box, label, crowd, segmentation) of one annotation, or a DataError naming it."""
    aid = ann.get("id")
    if ann.get("image_id") not in images:
        raise DataError(f"{path}: annotation {aid} points at image {ann.get('image_id')!r}, which the file does "
                        f"not list")
    if ann.get("category_id") not in labels:
        raise DataError(f"{path}: annotation {aid} has category_id {ann.get('category_id')!r}, not one of the "
                        f"file's {len(labels)} categories")
    x, y, w, h = detection.bbox_of(path, ann)
    _, height, width = images[ann["image_id"]]
    if w < 0 or h < 0 or x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE \
            or y + h > height + BOX_TOLERANCE:
        raise DataError(f"{path}: annotation {aid} has bbox {[x, y, w, h]} outside its {width}x{height} image "
                        f"{ann['image_id']}")
    crowd = bool(ann.get("iscrowd", 0))
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        if not {"counts", "size"} <= set(segmentation) or list(segmentation["size"]) != [height, width]:
            raise DataError(f"{path}: annotation {aid} has an RLE segmentation without counts or whose size "
                            f"{segmentation.get('size')} is not its image's [{height}, {width}]")
    elif isinstance(segmentation, list) and segmentation:
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                points = len(polygon) / 2 if isinstance(polygon, list) else 0
                raise DataError(f"{path}: annotation {aid} has a polygon of {points:g} points; at least 3 "
                                f"(x, y) pairs expected")
    else:
        raise DataError(f"{path}: annotation {aid} has no segmentation (polygons or RLE expected)")
    return aid, (x, y, x + w, y + h), labels[ann["category_id"]], crowd, segmentation


def decode_mask(segmentation, height: int, width: int) -> np.ndarray:
    """One annotation's mask, [H, W] uint8, from its polygons or RLE (pycocotools, as the reference)."""
    from pycocotools import mask as mask_util

    if isinstance(segmentation, list):  # polygons: one RLE each, merged
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_util.decode(rle)


def trainable_records(records: list[ImageRecord]) -> list[ImageRecord]:
    """The reference's training filter: images with at least one box wider and taller than 1 px (crowds count)."""
    return [r for r in records if r.wide_enough().any()]


class TrainImages(detection.Records):
    """Item (index, flip) -> (image [3, H, W] uint8, target {boxes xyxy, labels, masks [n, H, W] uint8, image_id})."""

    def __getitem__(self, item):
        r, flip = self.record(item)
        image = detection.image_tensor(r.path, r.id, r.width, r.height, r.annotation_ids)
        keep = np.flatnonzero(r.trainable())
        boxes = torch.from_numpy(r.boxes[keep].copy())
        masks = np.zeros((len(keep), r.height, r.width), np.uint8)
        for i, k in enumerate(keep):
            masks[i] = decode_mask(r.segmentations[k], r.height, r.width)
        masks = torch.from_numpy(masks)
        if flip:
            image, masks, boxes = image.flip(-1), masks.flip(-1), detection.flip_boxes(boxes, r.width)
        target = {"boxes": boxes, "labels": torch.from_numpy(r.labels[keep].copy()), "masks": masks,
                  "image_id": r.id}
        return image, target


class EvalImages(detection.Records):
    """Index -> (image [3, H, W] uint8, {image_id}): inference needs no targets."""

    def __getitem__(self, index):
        r = self.records[index]
        return detection.image_tensor(r.path, r.id, r.width, r.height, r.annotation_ids), {"image_id": r.id}


def build_loaders(root: Path, *, num_classes: int, batch_size: int, eval_batch_size: int, num_workers: int,
                  rank: int, world_size: int, seed: int, pin_memory: bool = False):
    """(train loader, this rank's eval loader, train records kept, val records, category id -> label)."""
    train, labels = read_split(root, "train", num_classes)
    val, val_labels = read_split(root, "val", num_classes)
    if val_labels != labels:
        raise DataError(f"{labels_path(root, 'val')}: its categories differ from {labels_path(root, 'train')}'s")
    train = trainable_records(train)
    if len(train) < batch_size * world_size:
        raise DataError(f"{labels_path(root, 'train')}: {len(train)} usable training images, fewer than one global "
                        f"batch of {batch_size * world_size}")
    train_loader, eval_loader = detection.loaders(
        TrainImages(train), EvalImages(val), batch_size=batch_size, eval_batch_size=eval_batch_size,
        num_workers=num_workers, rank=rank, world_size=world_size, seed=seed, pin_memory=pin_memory)
    return train_loader, eval_loader, train, val, labels


def write_split(root: Path, split: str, categories, images: list[dict], annotations: list[dict]) -> Path:
    """The split's instances json in the layout; `categories` is [(id, name)]."""
    path = labels_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"info": {"description": "written by maskrcnn.data.write_split"}, "licenses": [],
               "categories": [{"id": i, "name": name, "supercategory": "none"} for i, name in categories],
               "images": images, "annotations": annotations}
    path.write_text(json.dumps(content))
    return path
