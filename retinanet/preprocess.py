"""OpenImages v6 box annotations (CSV) -> the MLPerf subset's COCO json, for the 264 MLPerf classes.

    python3 -m retinanet.preprocess --annotations validation-annotations-bbox.csv \\
        --classes oidv6-class-descriptions.csv --split-dir /data/open-images-v6-mlperf/validation

reads `<split-dir>/data/<ImageID>.jpg` for the image sizes and writes
`<split-dir>/labels/openimages-mlperf.json` (retinanet.data's layout): every
box of an MLPerf class (config.MLPERF_CLASSES, category id = its index),
[x, y, w, h] = relative coordinates x image size, `iscrowd` = IsGroupOf; only
images with at least one such box (the subset the reference downloads with
fiftyone for these classes); ids from 1, images in ImageID order. Reading the
sizes of ~1.2M training images takes a while: a line of progress every
10,000 images, and the sizes are kept in `labels/image_sizes.tsv` as they are
read, so an interrupted run picks up where it stopped. A row that does not
parse, an unknown class id or a missing image is an error naming the file and
the row.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from retinanet.config import MLPERF_CLASSES
from retinanet.data import DataError, write_split

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")


def read_class_names(path: Path) -> dict[str, str]:
    """LabelName (e.g. /m/014j1m) -> DisplayName, from oidv6-class-descriptions.csv (with or without header)."""
    names = {}
    with open(path, newline="") as f:
        for row_number, row in enumerate(csv.reader(f), 1):
            if row_number == 1 and row[:2] == ["LabelName", "DisplayName"]:
                continue
            if len(row) < 2:
                raise DataError(f"{path}: row {row_number} is not 'LabelName,DisplayName'")
            names[row[0]] = row[1]
    return names


def read_boxes(path: Path, class_names: dict[str, str]) -> dict[str, list[tuple]]:
    """ImageID -> [(category id, xmin, xmax, ymin, ymax, is_group_of)] for the MLPerf classes, in file order."""
    category = {name: i for i, name in enumerate(MLPERF_CLASSES)}
    boxes: dict[str, list[tuple]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)} (an OpenImages *-annotations-bbox.csv?)")
        for row_number, row in enumerate(reader, 2):
            label = row["LabelName"]
            if label not in class_names:
                raise DataError(f"{path}: row {row_number} has LabelName {label!r}, which the class descriptions "
                                "do not list")
            if class_names[label] not in category:
                continue
            try:
                coords = tuple(float(row[c]) for c in ("XMin", "XMax", "YMin", "YMax"))
                group = int(row["IsGroupOf"])
            except ValueError:
                raise DataError(f"{path}: row {row_number} has a coordinate or IsGroupOf that is not a number") from None
            boxes.setdefault(row["ImageID"], []).append((category[class_names[label]], *coords, group))
    return boxes


def image_sizes(data_dir: Path, image_ids: list[str], cache: Path) -> dict[str, tuple[int, int]]:
    """(width, height) of every image, read from the JPEG headers; resumes from `cache`."""
    sizes = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():  # not a line cut by an interruption
                sizes[fields[0]] = (int(fields[1]), int(fields[2]))
        cache.write_text("".join(f"{i}\t{w}\t{h}\n" for i, (w, h) in sizes.items()))  # without the cut line
    todo = [i for i in image_ids if i not in sizes]
    start = time.perf_counter()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "a") as out:
        for n, image_id in enumerate(todo, 1):
            path = data_dir / f"{image_id}.jpg"
            try:
                with Image.open(path) as image:
                    sizes[image_id] = image.size
            except FileNotFoundError:
                raise DataError(f"{path}: missing; the annotations list image {image_id}") from None
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{path}: cannot read image {image_id} ({e})") from None
            out.write(f"{image_id}\t{sizes[image_id][0]}\t{sizes[image_id][1]}\n")
            if n % 10_000 == 0:
                rate = n / (time.perf_counter() - start)
                print(f"image sizes: {n}/{len(todo)}, {(len(todo) - n) / rate / 60:.1f} min left", flush=True)
    return sizes


def convert(annotations: Path, classes: Path, split_dir: Path) -> Path:
    boxes = read_boxes(annotations, read_class_names(classes))
    image_ids = sorted(boxes)
    sizes = image_sizes(split_dir / "data", image_ids, split_dir / "labels" / "image_sizes.tsv")
    images, anns = [], []
    for number, image_id in enumerate(image_ids, 1):
        width, height = sizes[image_id]
        images.append({"id": number, "file_name": f"{image_id}.jpg", "height": height, "width": width})
        for category, xmin, xmax, ymin, ymax, group in boxes[image_id]:
            w, h = (xmax - xmin) * width, (ymax - ymin) * height
            anns.append({"id": len(anns) + 1, "image_id": number, "category_id": category,
                         "bbox": [xmin * width, ymin * height, w, h], "area": w * h, "iscrowd": group})
    path = write_split(split_dir.parent, split_dir.name, list(MLPERF_CLASSES), images, anns)
    print(f"{path}: {len(images)} images, {len(anns)} boxes of {len({a['category_id'] for a in anns})} classes")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, required=True, help="<split>-annotations-bbox.csv")
    parser.add_argument("--classes", type=Path, required=True, help="oidv6-class-descriptions.csv")
    parser.add_argument("--split-dir", type=Path, required=True, help="the split's folder, holding data/")
    args = parser.parse_args(argv)
    convert(args.annotations, args.classes, args.split_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
