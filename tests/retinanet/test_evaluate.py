"""COCO box mAP with pycocotools: the ground truth scores 1.0, shuffled detections far less."""
import numpy as np
import pytest
import torch

from retinanet import data
from retinanet.config import MLPERF_CLASSES
from retinanet.evaluate import coco_map, coco_results
from retinanet.synthetic import SyntheticSpec, write_images


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_images(root, "validation", 40, np.random.default_rng(5), SyntheticSpec())
    return root, data.read_split(root, "validation", len(MLPERF_CLASSES))


def as_outputs(records, boxes=None, labels=None):
    outputs = []
    for i, r in enumerate(records):
        b = torch.from_numpy(r.boxes if boxes is None else boxes[i])
        outputs.append({"boxes": b, "scores": torch.ones(len(b)),
                        "labels": torch.from_numpy(r.labels if labels is None else labels[i])})
    return outputs


def test_the_ground_truth_as_detections_scores_1(split):
    root, records = split
    results = coco_results(as_outputs(records), [r.id for r in records])
    assert results[0]["bbox"][2:] == pytest.approx(list(records[0].boxes[0, 2:] - records[0].boxes[0, :2]))
    assert coco_map(data.labels_path(root, "validation"), results) == pytest.approx(1.0)


def test_shuffled_detections_score_far_below(split):
    root, records = split
    rng = np.random.default_rng(0)
    moved = [r.boxes + rng.uniform(-15, 15, r.boxes.shape).astype(np.float32) for r in records]
    relabelled = [rng.permutation(r.labels) if len(r.labels) > 1 else (r.labels + 1) % 264 for r in records]
    labels_json = data.labels_path(root, "validation")
    jittered = coco_map(labels_json, coco_results(as_outputs(records, boxes=moved), [r.id for r in records]))
    wrong = coco_map(labels_json, coco_results(as_outputs(records, labels=relabelled), [r.id for r in records]))
    assert jittered < 0.6 and wrong < 0.6
    assert coco_map(labels_json, []) == 0.0
