"""The MLPerf OpenImages subset in its on-disk layout: COCO-format detection json + JPEG files.

    <root>/{train,validation}/data/<id>.jpg
    <root>/{train,validation}/labels/openimages-mlperf.json
        categories  [{id, name, supercategory}], ids 0..263 (config.MLPERF_CLASSES order)
        images      [{id, file_name, height, width}]
        annotations [{id, image_id, category_id, bbox [x, y, w, h] in pixels, area, iscrowd (= IsGroupOf)}]

`read_split` checks the json against itself and the rules before a run
starts: a missing, empty, cut or non-json file, an image entry without a
file name or whole-pixel sizes, an annotation whose image is not listed, whose
bbox is not 4 numbers, leaves its image or has no area, or whose category is
outside 0..263 is a `DataError` naming the json file and the annotation id; so
is a split without its data folder. Images decode by content with PIL and
convert to RGB (grayscale, CMYK and a PNG named .jpg all load) during the run;
a missing, empty, undecodable or 16-bit file is a `DataError` naming it and its
annotations (`common.detection.load_rgb`). Training
flips horizontally with probability 0.5 (the reference's only augmentation;
`FlipSampler`); the model resizes to 800 x 800 itself. `write_split` writes the layout's json
(for `retinanet.preprocess` and `retinanet.synthetic`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import detection
from common.detection import DataError, FlipSampler, collate, to_device  # noqa: F401  (the reader's API)

LABELS = "labels/openimages-mlperf.json"
SPLITS = ("train", "validation")
BOX_TOLERANCE = 1.0  # pixels: boxes are relative coordinates x image size, rounding may overshoot by a hair


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray  # [n, 4] float32 xyxy, pixels
    labels: np.ndarray  # [n] int64, 0-based category ids
    annotation_ids: tuple


def labels_path(root: Path, split: str) -> Path:
    return Path(root) / split / LABELS


def read_split(root: Path, split: str, num_classes: int) -> list[ImageRecord]:
    """Every image of the split with its annotations, checked (see the module docstring)."""
    path = labels_path(root, split)
    content = detection.read_json(path, f"{split}/{LABELS} under {root}, COCO-format detection json")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            raise DataError(f"{path}: no '{key}' list (COCO detection format expected)")
    category_ids = {c.get("id") for c in content["categories"]}
    if category_ids != set(range(num_classes)):
        raise DataError(f"{path}: categories must have the ids 0..{num_classes - 1}, found {len(category_ids)} "
                        f"ids from {min(category_ids, default=None)} to {max(category_ids, default=None)}")
    images = {image.get("id") if isinstance(image, dict) else None: detection.image_entry(path, image)
              for image in content["images"]}
    per_image: dict[int, list] = {i: [] for i in images}
    for ann in content["annotations"]:
        per_image.setdefault(ann.get("image_id"), []).append(_checked(path, ann, images, num_classes))
    data_dir = Path(root) / split / "data"
    detection.check_image_dir(data_dir, path, len(images))
    records = []
    for image_id, (file_name, height, width) in images.items():
        anns = per_image[image_id]
        boxes = np.array([a[1] for a in anns], np.float32).reshape(-1, 4)
        records.append(ImageRecord(image_id, data_dir / file_name, height, width, boxes,
                                   np.array([a[2] for a in anns], np.int64), tuple(a[0] for a in anns)))
    return records


def _checked(path: Path, ann: dict, images: dict, num_classes: int) -> tuple:
    """(annotation id, xyxy box, category id) of one annotation, or a DataError naming it."""
    aid = ann.get("id")
    if ann.get("image_id") not in images:
        raise DataError(f"{path}: annotation {aid} points at image {ann.get('image_id')!r}, which the file does "
                        f"not list")
    category = ann.get("category_id")
    if not isinstance(category, int) or isinstance(category, bool) or not 0 <= category < num_classes:
        raise DataError(f"{path}: annotation {aid} has category_id {category!r}, outside 0..{num_classes - 1} "
                        f"(expected an integer id of the file's categories)")
    x, y, w, h = detection.bbox_of(path, ann)
    _, height, width = images[ann["image_id"]]
    if w <= 0 or h <= 0 or x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or x + w > width + BOX_TOLERANCE \
            or y + h > height + BOX_TOLERANCE:
        raise DataError(f"{path}: annotation {aid} has bbox {[x, y, w, h]} outside its {width}x{height} image "
                        f"{ann['image_id']} (or without area)")
    return aid, (x, y, x + w, y + h), category


class Detections(detection.Records):
    """Item (index, flip) -> (image [3, H, W] uint8, target {boxes xyxy, labels, image_id}), flipped when told."""

    def __getitem__(self, item):
        record, flip = self.record(item)
        image = detection.image_tensor(record.path, record.id, record.width, record.height, record.annotation_ids)
        boxes = torch.from_numpy(record.boxes.copy())
        if flip:
            image, boxes = image.flip(-1), detection.flip_boxes(boxes, record.width)
        target = {"boxes": boxes, "labels": torch.from_numpy(record.labels.copy()), "image_id": record.id}
        return image, target


def build_loaders(root: Path, *, num_classes: int, batch_size: int, eval_batch_size: int, num_workers: int,
                  rank: int, world_size: int, seed: int, pin_memory: bool = False):
    """(train loader, this rank's eval loader, train records, eval records)."""
    train, val = read_split(root, "train", num_classes), read_split(root, "validation", num_classes)
    train_loader, eval_loader = detection.loaders(
        Detections(train), Detections(val), batch_size=batch_size, eval_batch_size=eval_batch_size,
        num_workers=num_workers, rank=rank, world_size=world_size, seed=seed, pin_memory=pin_memory)
    return train_loader, eval_loader, train, val


def write_split(root: Path, split: str, categories: list[str], images: list[dict], annotations: list[dict]) -> Path:
    """The split's json in the layout (ids of `categories` are their positions)."""
    path = labels_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"categories": [{"id": i, "name": name, "supercategory": "none"} for i, name in enumerate(categories)],
               "images": images, "annotations": annotations}
    path.write_text(json.dumps(content))
    return path
