"""Mask R-CNN run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (targets, classes, image sizes, momentum, weight decay, the
decay factor) are in `RULES`; DEVICE, MODEL_SIZE (full: ResNet-50 FPN at
800/1333; debug: the same code with a narrower network, see
`model.MaskRCNNShape.debug`), PRECISION, TORCH_COMPILE and DATALOADER_WORKERS
are `common.config.RuntimeConfig`'s. NVIDIA passes the solver settings in
EXTRA_CONFIG (`SOLVER.BASE_LR 0.12 SOLVER.WARMUP_ITERS 625 ...`); here each is
its own variable (BASE_LR, WARMUP_ITERS, WARMUP_FACTOR, STEPS,
NUM_IMAGE_CANDIDATES = MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN,
CANDIDATES_PER_IMAGE = MODEL.RPN.FPN_POST_NMS_TOP_N_PER_IMAGE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import env_field

# COCO 2017's 80 categories: (id, name), ids 1..90 with gaps, as in instances_{train,val}2017.json.
COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules, `closed_maskrcnn.yaml` and the reference (maskrcnn-benchmark)."""

    benchmark: str = "maskrcnn"
    target_bbox: float = 0.377  # COCO box AP@[.5:.95] on val2017
    target_segm: float = 0.339  # and mask AP@[.5:.95], both at the same evaluation
    num_classes: int = len(COCO_CATEGORIES) + 1  # 80 + background
    min_size: int = 800  # shorter side resized to 800 unless the longer would pass 1333
    max_size: int = 1333
    size_divisible: int = 32  # batches padded to a multiple of 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_factor: float = 0.1  # x0.1 at each of the two STEPS
    # What train_samples / eval_samples log: train2017's images that maskrcnn-benchmark's COCODataset trains on
    # (remove_images_without_annotations: 117,266 of the 118,287 listed; data.trainable_records) and val2017's.
    train_images: int = 117_266
    eval_images: int = 5_000


RULES = Rules()


def _steps(text: str) -> tuple:
    return tuple(int(v) for v in str(text).strip("()[] ").replace(" ", "").split(",") if v)


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Hyperparameters of one run."""

    batch_size: int = env_field("BATCHSIZE", "per-process (per-GPU) training batch, in images")
    base_lr: float = env_field("BASE_LR", "SGD learning rate after warmup (rules: a multiple of 0.02)")
    warmup_iters: int = env_field("WARMUP_ITERS", "iterations of linear warmup")
    warmup_factor: float = env_field("WARMUP_FACTOR", "mlperf_linear warmup: the LR rises by this much per iteration "
                                     "up to BASE_LR (NVIDIA: BASE_LR / WARMUP_ITERS)")
    steps: str = env_field("STEPS", "the two iterations the learning rate is multiplied by 0.1 at, e.g. 12000,16000")
    num_epochs: int = env_field("NUMEPOCHS", "give up after this many epochs (an evaluation follows each)")
    num_image_candidates: int = env_field("NUM_IMAGE_CANDIDATES",
                                          "RPN proposals kept after NMS in training (NVIDIA's "
                                          "FPN_POST_NMS_TOP_N_TRAIN), over the batch unless CANDIDATES_PER_IMAGE")
    candidates_per_image: bool = env_field("CANDIDATES_PER_IMAGE",
                                           "NUM_IMAGE_CANDIDATES counts per image (1) or over the local batch (0)",
                                           False)
    eval_batch_size: int = env_field("EVALBATCHSIZE", "per-process evaluation batch (0: BATCHSIZE)", 0)
    min_size: int = env_field("MIN_SIZE", "shorter image side after resizing; the rules' 800", RULES.min_size)
    max_size: int = env_field("MAX_SIZE", "longest image side after resizing; the rules' 1333", RULES.max_size)
    coco_eval: Literal["pycocotools", "faster"] = env_field(
        "COCO_EVAL", "COCOeval of the references (pycocotools) or faster-coco-eval's drop-in", "pycocotools")
    roi_align: Literal["torchvision", "separable"] = env_field(
        "ROI_ALIGN", "torchvision's RoIAlign kernels, or the same RoIAlign as two matmuls (maskrcnn.roi_align: "
        "faster on a CPU)", "torchvision")

    def __post_init__(self):
        for name, value in (("BATCHSIZE", self.batch_size), ("NUMEPOCHS", self.num_epochs),
                            ("NUM_IMAGE_CANDIDATES", self.num_image_candidates), ("MIN_SIZE", self.min_size),
                            ("MAX_SIZE", self.max_size)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.base_lr <= 0 or self.warmup_iters < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError(f"BASE_LR={self.base_lr}, WARMUP_ITERS={self.warmup_iters}, WARMUP_FACTOR="
                             f"{self.warmup_factor}: expected > 0, >= 0 and in (0, 1]")
        steps = _steps(self.steps)
        if len(steps) != 2 or not 0 < steps[0] <= steps[1]:
            raise ValueError(f"STEPS={self.steps!r}: expected two increasing iterations, e.g. 12000,16000")
        if self.max_size < self.min_size:
            raise ValueError(f"MAX_SIZE={self.max_size} is below MIN_SIZE={self.min_size}")

    @property
    def decay_steps(self) -> tuple[int, int]:
        return _steps(self.steps)

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size
