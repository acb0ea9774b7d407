"""COCO box mAP@[.5:.95] over the whole validation set, with pycocotools, as the reference scores it.

Each rank runs inference on its shard of the validation images; the
detections (boxes in original-image pixels, as the model's post-processing
returns them) are gathered on rank 0 once, scored there by `COCOeval(iouType
"bbox")` against the split's json, and the mAP is sent back to every rank.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
import torch.distributed as torch_dist


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


def coco_map(labels_json: Path, results: list[dict]) -> float:
    """mAP@[.5:.95] (COCOeval stats[0]) of `results` against the ground truth in `labels_json`."""
    from pycocotools.coco import COCO  # imported only for evaluation
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO(str(labels_json))
        if not results:
            return 0.0
        evaluation = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def gather_on_rank0(results: list[dict]) -> list[dict] | None:
    """Every rank's results on rank 0 (None elsewhere): one gather of the whole list."""
    if not torch_dist.is_initialized() or torch_dist.get_world_size() == 1:
        return results
    gathered = [None] * torch_dist.get_world_size() if torch_dist.get_rank() == 0 else None
    torch_dist.gather_object(results, gathered, dst=0)
    return [r for part in gathered for r in part] if gathered is not None else None


def evaluate(model, batches, labels_json: Path, device: torch.device) -> float:
    """mAP of `model` (in eval mode) over this rank's validation batches, all ranks together."""
    results = []
    for images, targets in batches:
        results += coco_results(model(images), [t["image_id"] for t in targets])
    everything = gather_on_rank0(results)
    value = torch.tensor([coco_map(labels_json, everything) if everything is not None else 0.0],
                         dtype=torch.float64, device=device)
    if torch_dist.is_initialized():
        torch_dist.broadcast(value, src=0)
    return float(value)

