"""COCO box mAP@[.5:.95] over the whole validation set, with pycocotools, as the reference scores it.

Each rank runs inference on its shard of the validation images; the
detections (boxes in original-image pixels, as the model's post-processing
returns them) are gathered on rank 0 once (`common.detection.gather_on_rank0`),
scored there by `COCOeval(iouType "bbox")` against the split's json, and the
mAP is sent back to every rank.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common import detection


def coco_results(outputs: list[dict], image_ids: list[int]) -> list[dict]:
    """The model's detections as COCO result entries: [x, y, w, h] boxes, score, 0-based category id."""
    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes = output["boxes"].detach().float().cpu().clone()
        boxes[:, 2:] -= boxes[:, :2]
        for box, score, label in zip(boxes.tolist(), output["scores"].float().cpu().tolist(),
                                     output["labels"].cpu().tolist()):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": score})
    return results


def coco_map(labels_json: Path, results: list[dict], backend: str = "pycocotools") -> float:
    """mAP@[.5:.95] (COCOeval stats[0]) of `results` against the ground truth in `labels_json`."""
    return detection.coco_eval(labels_json, {"bbox": results}, backend=backend)["bbox"]


def evaluate(model, batches, labels_json: Path, device: torch.device, backend: str = "pycocotools") -> float:
    """mAP of `model` (in eval mode) over this rank's validation batches, all ranks together."""
    results = []
    for images, targets in batches:
        results += coco_results(model(images), [t["image_id"] for t in targets])
    everything = detection.gather_on_rank0(results)
    scores = {"bbox": coco_map(labels_json, everything, backend)} if everything is not None else None
    return detection.broadcast_scores(scores, ["bbox"], device)["bbox"]
