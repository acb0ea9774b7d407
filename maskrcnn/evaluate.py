"""COCO box and mask AP@[.5:.95] over the whole validation set, with pycocotools, as the reference scores them.

Each rank runs inference on its shard of val2017. The model's post-processing
returns boxes in original-image pixels and each detection's 28x28 mask pasted
into the original image (probabilities); a mask is its pixels above 0.5,
RLE-encoded by pycocotools. The results are gathered on rank 0 once, as one
gather of each rank's list (`common.detection.gather_on_rank0`; NVIDIA's
JSON-string trick measured slower here), scored there by COCOeval for "bbox" and "segm"
against the split's json (pycocotools, or faster-coco-eval with
COCO_EVAL=faster), and both values are sent back to every rank.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common import detection

METRICS = ("BBOX", "SEGM")  # the logged eval_accuracy's keys
MASK_THRESHOLD = 0.5


def coco_results(outputs: list[dict], image_ids: list[int], coco_id: dict[int, int]) -> list[dict]:
    """COCO result entries with both a bbox and an RLE segmentation; `coco_id` maps labels back to category ids."""
    from pycocotools import mask as mask_util

    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes = output["boxes"].detach().float().cpu().clone()
        boxes[:, 2:] -= boxes[:, :2]
        scores = output["scores"].float().cpu().tolist()
        labels = [coco_id[int(v)] for v in output["labels"].cpu().tolist()]
        masks = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
        for box, score, label, rle in zip(boxes.tolist(), scores, labels, rles):
            results.append({"image_id": image_id, "category_id": label, "score": score, "bbox": box,
                            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    return results


def split_by_type(results: list[dict]) -> dict[str, list[dict]]:
    """{"bbox": entries without masks, "segm": entries without boxes}: each IoU type is scored apart."""
    return {"bbox": [{k: v for k, v in r.items() if k != "segmentation"} for r in results],
            "segm": [{k: v for k, v in r.items() if k != "bbox"} for r in results]}


class Evaluator:
    """Scores the model on the validation set; keeps rank 0's ground truth loaded across evaluations."""

    def __init__(self, labels_json: Path, labels: dict[int, int], device: torch.device,
                 backend: str = "pycocotools"):
        self.labels_json, self.device, self.backend = Path(labels_json), device, backend
        self.coco_id = {label: coco for coco, label in labels.items()}
        self._truth = None

    def truth(self):
        if self._truth is None:
            self._truth = detection.load_truth(self.labels_json, self.backend)
        return self._truth

    def score(self, results: list[dict] | None) -> dict[str, float] | None:
        """{"BBOX", "SEGM"} of all ranks' results (rank 0); None where `results` is (the other ranks)."""
        if results is None:
            return None
        scores = detection.coco_eval(self.labels_json, split_by_type(results), truth=self.truth(),
                                     backend=self.backend)
        return {"BBOX": scores["bbox"], "SEGM": scores["segm"]}

    def __call__(self, model, batches) -> dict[str, float]:
        """{"BBOX": .., "SEGM": ..} of `model` (in eval mode) over this rank's batches, all ranks together."""
        results = []
        for images, targets in batches:
            results += coco_results(model(images), [t["image_id"] for t in targets], self.coco_id)
        gathered = detection.gather_on_rank0(results)
        return detection.broadcast_scores(self.score(gathered), METRICS, self.device)
