"""The OpenImages-layout reader on what the generator and the preprocessing write, and on bad files."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from retinanet import data, preprocess
from retinanet.config import MLPERF_CLASSES
from retinanet.synthetic import CLASS_OF, SyntheticSpec, write_images

SPEC = SyntheticSpec(train_images=12, val_images=4)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("openimages")
    write_images(root, "train", 12, np.random.default_rng(0), SPEC)
    return root


def test_generator_output_reads_back_with_its_quirks(small):
    records = data.read_split(small, "train", len(MLPERF_CLASSES))
    assert len(records) == 12 and all(len(r.labels) >= 1 for r in records)
    assert {MLPERF_CLASSES[c] for r in records for c in r.labels} <= set(CLASS_OF.values())
    formats = {Image.open(r.path).format + "/" + Image.open(r.path).mode for r in records[:4]}
    assert formats == {"PNG/RGB", "JPEG/L", "JPEG/CMYK", "JPEG/RGB"}  # OpenImages' quirks, in .jpg files
    dataset = data.Detections(records)
    for i in range(4):
        image, target = dataset[i]
        assert image.shape == (3, records[i].height, records[i].width) and image.dtype == torch.uint8
        assert target["boxes"].shape == (len(records[i].labels), 4) and target["image_id"] == records[i].id


def test_a_flip_mirrors_the_boxes_and_the_flips_do_not_depend_on_the_process_count(small):
    records = data.read_split(small, "train", len(MLPERF_CLASSES))
    dataset = data.Detections(records)
    (plain, t), (flipped, tf) = dataset[(5, False)], dataset[(5, True)]
    assert torch.equal(flipped, plain.flip(-1))
    w = records[5].width
    torch.testing.assert_close(tf["boxes"][:, [0, 2]], w - t["boxes"][:, [2, 0]])
    one = list(data.FlipSampler(dataset, num_replicas=1, rank=0, seed=3, drop_last=True))
    two = [item for rank in (0, 1) for item in data.FlipSampler(dataset, num_replicas=2, rank=rank, seed=3,
                                                                 drop_last=True)]
    assert sorted(one) == sorted(two) and 0 < sum(flip for _, flip in one) < len(one)


def broken(small, tmp_path, edit):
    root = tmp_path / "broken"
    for split in ("train",):
        (root / split / "labels").mkdir(parents=True)
        (root / split / "data").symlink_to(small / split / "data")
        content = json.loads(data.labels_path(small, split).read_text())
        edit(content)
        data.labels_path(root, split).write_text(json.dumps(content))
    return root


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["annotations"][0].update(image_id=999), "annotation 1 points at image 999"),
    (lambda c: c["annotations"][1].update(category_id=264), "annotation 2 has category_id 264, outside 0..263"),
    (lambda c: c["annotations"][2].update(bbox=[10, 10, 500, 20]), "annotation 3 has bbox .* outside its"),
    (lambda c: c["annotations"][0].update(bbox=[10, 10, 0, 20]), "annotation 1 has bbox .*without area"),
    (lambda c: c.pop("annotations"), "no 'annotations' list"),
    (lambda c: c["categories"].pop(), "categories must have the ids 0..263"),
])
def test_a_bad_annotation_is_named_with_the_file_and_its_id(small, tmp_path, edit, message):
    root = broken(small, tmp_path, edit)
    with pytest.raises(data.DataError, match=rf"openimages-mlperf\.json: {message}"):
        data.read_split(root, "train", len(MLPERF_CLASSES))


def test_unreadable_json_and_missing_or_corrupt_images_are_named(small, tmp_path):
    root = broken(small, tmp_path, lambda c: None)
    path = data.labels_path(root, "train")
    path.write_text(path.read_text()[:100])
    with pytest.raises(data.DataError, match="not readable json"):
        data.read_split(root, "train", len(MLPERF_CLASSES))
    with pytest.raises(data.DataError, match=r"validation/labels/openimages-mlperf\.json: missing"):
        data.read_split(small, "validation", len(MLPERF_CLASSES))
    records = data.read_split(small, "train", len(MLPERF_CLASSES))
    gone = data.ImageRecord(99, small / "train" / "data" / "gone.jpg", 10, 10, records[0].boxes, records[0].labels,
                            (41, 42))
    with pytest.raises(data.DataError, match=r"gone\.jpg: missing \(image 99, annotations \[41, 42\]\)"):
        data.Detections([gone])[0]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_preprocessing_keeps_the_mlperf_classes_in_pixels_with_iscrowd_from_isgroupof(tmp_path):
    split = tmp_path / "validation"
    (split / "data").mkdir(parents=True)
    for image_id, size in (("aaa", (200, 100)), ("bbb", (50, 40)), ("ccc", (30, 30))):
        Image.new("RGB", size).save(split / "data" / f"{image_id}.jpg")
    write_csv(tmp_path / "classes.csv", ["LabelName", "DisplayName"],
              [["/m/apple", "Apple"], ["/m/zebra", "Zebra"], ["/m/cloud", "Cloud"]])
    header = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsOccluded",
              "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside"]
    write_csv(tmp_path / "boxes.csv", header, [
        ["aaa", "xclick", "/m/apple", 1, 0.1, 0.6, 0.2, 0.9, 0, 0, 1, 0, 0],
        ["aaa", "xclick", "/m/cloud", 1, 0.0, 1.0, 0.0, 0.5, 0, 0, 0, 0, 0],  # not an MLPerf class: dropped
        ["bbb", "xclick", "/m/zebra", 1, 0.0, 0.5, 0.5, 1.0, 0, 0, 0, 0, 0],
        ["ccc", "xclick", "/m/cloud", 1, 0.0, 0.5, 0.5, 1.0, 0, 0, 0, 0, 0],  # no MLPerf box: image dropped
    ])
    preprocess.main(["--annotations", str(tmp_path / "boxes.csv"), "--classes", str(tmp_path / "classes.csv"),
                     "--split-dir", str(split)])
    content = json.loads(data.labels_path(tmp_path, "validation").read_text())
    assert [i["file_name"] for i in content["images"]] == ["aaa.jpg", "bbb.jpg"]
    apple, zebra = content["annotations"]
    assert apple["category_id"] == MLPERF_CLASSES.index("Apple") and zebra["category_id"] == 262  # Zebra; Zucchini is 263
    assert apple["bbox"] == pytest.approx([20, 20, 100, 70]) and apple["iscrowd"] == 1 and zebra["iscrowd"] == 0
    assert len(content["categories"]) == 264
    records = data.read_split(tmp_path, "validation", 264)
    assert records[0].boxes[0].tolist() == pytest.approx([20, 20, 120, 90])
    assert (split / "labels" / "image_sizes.tsv").read_text().count("\n") == 2  # kept for a resumed run
    write_csv(tmp_path / "bad.csv", header, [["aaa", "xclick", "/m/unknown", 1, 0, 1, 0, 1, 0, 0, 0, 0, 0]])
    with pytest.raises(data.DataError, match=r"bad\.csv: row 2 has LabelName '/m/unknown'"):
        preprocess.main(["--annotations", str(tmp_path / "bad.csv"), "--classes", str(tmp_path / "classes.csv"),
                         "--split-dir", str(split)])


def test_preprocessing_resumes_from_the_size_cache_and_rereads_a_line_cut_by_an_interruption(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    Image.new("RGB", (64, 48)).save(data_dir / "bbb.jpg")
    cache = tmp_path / "labels" / "image_sizes.tsv"
    cache.parent.mkdir()
    cache.write_text("aaa\t200\t100\nbbb\t6")  # aaa.jpg is not on disk: its size must come from the cache
    assert preprocess.image_sizes(data_dir, ["aaa", "bbb"], cache) == {"aaa": (200, 100), "bbb": (64, 48)}
    assert cache.read_text().splitlines()[-1] == "bbb\t64\t48"
