"""The COCO 2017 reader: generator output round-trips, the reference's training filters, bad annotations named."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from maskrcnn import data
from maskrcnn.config import COCO_CATEGORIES
from maskrcnn.synthetic import CATEGORY_OF, CROWD_EVERY, EMPTY_IMAGE, SyntheticSpec, write_images

NUM_CLASSES = 81


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_images(root, "train", 40, np.random.default_rng(3), SyntheticSpec())
    write_images(root, "val", 8, np.random.default_rng(4), SyntheticSpec(), first_id=1_000_000)
    return root


def test_generator_output_reads_back_with_coco_ids_mapped_to_contiguous_labels(coco):
    records, labels = data.read_split(coco, "train", NUM_CLASSES)
    assert len(records) == 40 and sorted(labels) == [i for i, _ in COCO_CATEGORIES]
    assert labels[1] == 1 and labels[13] == 12 and labels[37] == 33 and labels[90] == 80  # gaps: 12, 26, 29, 30, ...
    used = {int(label) for r in records for label in r.labels}
    assert used <= {labels[c] for c in CATEGORY_OF.values()}
    assert records[0].path == coco / "train2017" / "000000000001.jpg"
    crowds = [r for r in records if r.crowd.any()]
    assert [r.id for r in crowds] == [i + 1 for i in range(40) if i % CROWD_EVERY == 5]


def test_training_skips_images_without_annotations_and_drops_crowds_from_the_targets(coco):
    records, _ = data.read_split(coco, "train", NUM_CLASSES)
    kept = data.trainable_records(records)
    assert [r.id for r in records if r not in kept] == [EMPTY_IMAGE + 1]
    crowd = next(r for r in kept if r.crowd.any())
    _, target = data.TrainImages([crowd])[0]
    assert len(target["boxes"]) == int((~crowd.crowd).sum()) == len(target["masks"])
    val, _ = data.read_split(coco, "val", NUM_CLASSES)
    assert len(val) == 8  # validation keeps every image


def test_masks_decode_from_polygons_and_crowd_rle_and_flip_with_the_image(coco):
    records, _ = data.read_split(coco, "train", NUM_CLASSES)
    record = data.trainable_records(records)[0]
    image, target = data.TrainImages([record])[0]
    assert image.dtype == torch.uint8 and image.shape == (3, record.height, record.width)
    assert target["masks"].shape == (len(record.boxes), record.height, record.width)
    for box, mask in zip(target["boxes"], target["masks"]):  # each mask fills its box
        ys, xs = np.nonzero(mask.numpy())
        assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5
        assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5
    flipped_image, flipped = data.TrainImages([record])[(0, True)]
    assert torch.equal(flipped_image, image.flip(-1)) and torch.equal(flipped["masks"], target["masks"].flip(-1))
    assert torch.allclose(flipped["boxes"][:, 0], record.width - target["boxes"][:, 2])
    content = json.loads(data.labels_path(coco, "train").read_text())
    crowd = next(a for a in content["annotations"] if a["iscrowd"])
    assert isinstance(crowd["segmentation"]["counts"], list)  # uncompressed RLE, as COCO stores crowds
    h, w = crowd["segmentation"]["size"]
    assert data.decode_mask(crowd["segmentation"], h, w).sum() == pytest.approx(crowd["area"])
    compressed = mask_util.frPyObjects(crowd["segmentation"], h, w)
    assert np.array_equal(data.decode_mask(compressed, h, w), data.decode_mask(crowd["segmentation"], h, w))


def rewrite(coco, tmp_path, change):
    """A copy of the train json with `change(content)` applied, in a fresh root."""
    content = json.loads(data.labels_path(coco, "train").read_text())
    change(content)
    path = data.labels_path(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(content))
    return tmp_path


def first_object(content):
    return next(a for a in content["annotations"] if not a["iscrowd"])


@pytest.mark.parametrize("change, message", [
    (lambda c: first_object(c).update(segmentation=[[1.0, 1.0, 5.0, 5.0]]), "has a polygon of 2 points"),
    (lambda c: first_object(c).update(segmentation=[]), "has no segmentation"),
    (lambda c: first_object(c).update(bbox=[50.0, 50.0, 200.0, 10.0]), "has bbox .* outside its"),
    (lambda c: first_object(c).update(category_id=12), "has category_id 12, not one of the file's 80"),
    (lambda c: first_object(c).update(image_id=999), "points at image 999"),
], ids=["two-point polygon", "no segmentation", "bbox outside", "unknown category", "unknown image"])
def test_each_bad_annotation_is_named_by_its_id(coco, tmp_path, change, message):
    content = json.loads(data.labels_path(coco, "train").read_text())
    aid = first_object(content)["id"]
    root = rewrite(coco, tmp_path, change)
    with pytest.raises(data.DataError, match=f"annotation {aid} {message}"):
        data.read_split(root, "train", NUM_CLASSES)


def test_missing_or_cut_json_and_wrong_categories_are_named(coco, tmp_path):
    with pytest.raises(data.DataError, match="instances_train2017.json: missing"):
        data.read_split(tmp_path, "train", NUM_CLASSES)
    text = data.labels_path(coco, "train").read_text()
    path = data.labels_path(tmp_path, "train")
    path.parent.mkdir(parents=True)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(data.DataError, match="not readable json.*truncated"):
        data.read_split(tmp_path, "train", NUM_CLASSES)
    content = json.loads(text)
    content["categories"] = content["categories"][:10]
    path.write_text(json.dumps(content))
    with pytest.raises(data.DataError, match="expected 80 categories"):
        data.read_split(tmp_path, "train", NUM_CLASSES)


def test_a_missing_image_file_is_named_with_its_annotations(coco, tmp_path):
    records, _ = data.read_split(coco, "train", NUM_CLASSES)
    record = records[0]
    moved = data.ImageRecord(record.id, tmp_path / "gone.jpg", record.height, record.width, record.boxes,
                             record.labels, record.crowd, record.segmentations, record.annotation_ids)
    with pytest.raises(data.DataError, match=f"gone.jpg: missing \\(image {record.id}, annotations"):
        data.TrainImages([moved])[0]
