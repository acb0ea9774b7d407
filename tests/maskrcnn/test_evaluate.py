"""Box and mask AP with pycocotools: the ground truth scores 1.0 on both, damaged detections far less."""
import json

import numpy as np
import pytest
import torch

from common.detection import gather_on_rank0
from maskrcnn import data
from maskrcnn.evaluate import Evaluator, coco_results, split_by_type
from maskrcnn.synthetic import SyntheticSpec, write_images
from tests.conftest import gloo_ranks


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_images(root, "val", 40, np.random.default_rng(5), SyntheticSpec())
    records, labels = data.read_split(root, "val", 81)
    return Evaluator(data.labels_path(root, "val"), labels, torch.device("cpu")), records


def as_outputs(records, shift=0, erode=False, cut_top=0.0):
    """The ground truth (crowds left out) as the model's outputs: boxes, scores, labels, pasted mask probabilities."""
    outputs = []
    for r in records:
        keep = np.flatnonzero(~r.crowd)
        masks = np.zeros((len(keep), 1, r.height, r.width), np.float32)
        for i, k in enumerate(keep):
            masks[i, 0] = data.decode_mask(r.segmentations[k], r.height, r.width)
            rows = np.flatnonzero(masks[i, 0].any(1))
            if erode:  # keep only the mask's middle rows
                masks[i, 0, rows[: len(rows) // 3]] = 0
                masks[i, 0, rows[2 * len(rows) // 3:]] = 0
            masks[i, 0, rows[: int(len(rows) * cut_top)]] = 0
        outputs.append({"boxes": torch.from_numpy(r.boxes[keep] + shift), "scores": torch.ones(len(keep)),
                        "labels": torch.from_numpy(r.labels[keep]), "masks": torch.from_numpy(masks)})
    return outputs


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_the_ground_truth_as_detections_scores_1_for_both_metrics(split, backend):
    evaluator, records = split
    evaluator = Evaluator(evaluator.labels_json, {v: k for k, v in evaluator.coco_id.items()}, evaluator.device,
                          backend)
    results = coco_results(as_outputs(records), [r.id for r in records], evaluator.coco_id)
    assert {r["category_id"] for r in results} <= {15, 37, 38, 72}  # COCO ids, not the model's labels
    assert evaluator.score(results) == {"BBOX": pytest.approx(1.0), "SEGM": pytest.approx(1.0)}


def test_faster_coco_eval_scores_damaged_detections_as_pycocotools_does(split):
    evaluator, records = split
    labels = {v: k for k, v in evaluator.coco_id.items()}
    ids = [r.id for r in records]
    rng = np.random.default_rng(1)
    outputs = as_outputs(records, shift=3.0, cut_top=0.3)
    for out in outputs:  # scores that order the detections, so that precision varies along the recall axis
        out["scores"] = torch.from_numpy(rng.uniform(0.1, 1.0, len(out["scores"])).astype(np.float32))
    results = coco_results(outputs, ids, evaluator.coco_id)
    slow, fast = (Evaluator(evaluator.labels_json, labels, evaluator.device, backend).score(
        json.loads(json.dumps(results))) for backend in ("pycocotools", "faster"))
    assert 0.05 < slow["BBOX"] < 0.95 and 0.05 < slow["SEGM"] < 0.95
    assert fast == {"BBOX": pytest.approx(slow["BBOX"], abs=1e-9), "SEGM": pytest.approx(slow["SEGM"], abs=1e-9)}


def test_bad_boxes_and_bad_masks_each_lower_their_own_metric(split):
    evaluator, records = split
    ids = [r.id for r in records]
    moved = evaluator.score(coco_results(as_outputs(records, shift=6.0), ids, evaluator.coco_id))
    eroded = evaluator.score(coco_results(as_outputs(records, erode=True), ids, evaluator.coco_id))
    assert moved["BBOX"] < 0.6
    assert eroded["SEGM"] < 0.3 and eroded["BBOX"] == pytest.approx(1.0)  # boxes untouched
    assert evaluator.score([]) == {"BBOX": 0.0, "SEGM": 0.0}


def test_each_iou_type_gets_its_own_entries_and_one_process_keeps_its_own_results(split):
    evaluator, records = split
    results = coco_results(as_outputs(records[:3]), [r.id for r in records[:3]], evaluator.coco_id)
    by_type = split_by_type(results)
    assert all("segmentation" not in r for r in by_type["bbox"]) and all("bbox" not in r for r in by_type["segm"])
    assert gather_on_rank0(results) == results


def _score_shard(rank: int, world: int, store: str, root: str, queue) -> None:
    """One gloo rank: scores its half of the ground truth as detections; rank 0 scores both halves together."""
    import torch.distributed as torch_dist
    torch_dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        records, labels = data.read_split(root, "val", 81)
        evaluator = Evaluator(data.labels_path(root, "val"), labels, torch.device("cpu"))
        shard = records[rank::world]
        outputs = as_outputs(shard)
        batches = [([torch.zeros(3, 4, 4)] * len(shard), [{"image_id": r.id} for r in shard])]
        queue.put((rank, evaluator(lambda images: outputs, batches)))
    finally:
        torch_dist.destroy_process_group()


def test_two_ranks_gather_their_detections_once_and_both_get_rank_0s_scores(split, tmp_path):
    evaluator, _ = split
    root = str(evaluator.labels_json.parents[1])
    scores = gloo_ranks(_score_shard, 2, tmp_path / "store", root)
    # Either half alone would score about 0.5 recall-limited AP; both halves on rank 0 score 1.0, sent to rank 1.
    assert scores[0] == scores[1] == {"BBOX": pytest.approx(1.0), "SEGM": pytest.approx(1.0)}
