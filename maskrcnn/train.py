"""Mask R-CNN (ResNet-50 FPN) on COCO 2017 to box AP 0.377 and mask AP 0.339 (MLPerf Training v3.0 `maskrcnn`, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 5 logged experiments):
    source config_DGXH100_001x08x012.sh && DATADIR=/data/coco2017 LOGDIR=$PWD/results NEXP=5 \\
        ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=5; source config_DGXH100_008x08x004.sh
    CONT=<image> DATADIR=/data/coco2017 LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

DATADIR holds train2017/, val2017/, annotations/instances_{train,val}2017.json and
backbone/resnet50-0676ba61.pth (torchvision's ImageNet weights; --backbone-checkpoint points elsewhere).
SGD (momentum 0.9, weight decay 1e-4; biases at 2x the learning rate without weight decay, as the
reference) at BASE_LR, warmed up linearly from 0 over WARMUP_ITERS (NVIDIA's mlperf_linear: LR(i) =
BASE_LR - (WARMUP_ITERS - i) x WARMUP_FACTOR), x0.1 at each of the two STEPS; global batch BATCHSIZE x
GPUs; box and mask AP over the whole validation set after every epoch; stop when both targets are met.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch
import torch.nn as nn

from common import detection, dist, loader, schedule
from common.config import RuntimeConfig, parse_run_arguments, run_arguments
from common.mlperf_log import constants
from common.parallelize import parallelize_ddp, unwrap
from common.precision import Precision
from common.session import RunPlan, Session
from common.step import TrainStep, optimizer_kernels
from maskrcnn import data
from maskrcnn.config import RULES, MaskRCNNConfig
from maskrcnn.evaluate import Evaluator
from maskrcnn.model import MaskRCNNShape, build_maskrcnn, load_backbone, loss, seed_sampling

BENCH_DIR = Path(__file__).resolve().parent
RUN_CONFIG = MaskRCNNConfig
BIAS_LR_FACTOR = 2.0  # maskrcnn-benchmark's SOLVER.BIAS_LR_FACTOR; biases also get no weight decay


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, MaskRCNNConfig, "COCO 2017 root (see above)")
    parser.add_argument("--backbone-checkpoint", type=Path, default=None,
                        help="ImageNet weights in torchvision's layout (default: the one DATADIR/backbone/*.pth)")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def build_model(cfg: MaskRCNNConfig, model_size: str) -> nn.Module:
    return build_maskrcnn(MaskRCNNShape.debug() if model_size == "debug" else MaskRCNNShape(),
                          min_size=cfg.min_size, max_size=cfg.max_size,
                          num_image_candidates=cfg.num_image_candidates,
                          candidates_per_image=cfg.candidates_per_image, roi_align=cfg.roi_align)


def parallelize(model: nn.Module, *, device: torch.device, world_size: int, precision: Precision,
                torch_compile: bool) -> nn.Module:
    blocks = ["backbone.body.layer2", "backbone.body.layer3", "backbone.body.layer4", "backbone.fpn"]
    return parallelize_ddp(model, device=device, world_size=world_size, precision=precision,
                           compile_blocks=blocks if torch_compile else None)


def warmup_multistep_lr(cfg: MaskRCNNConfig):
    """NVIDIA's mlperf_linear warmup, then x0.1 after each of STEPS (step i is the i-th update, 0 first)."""
    first, second = cfg.decay_steps

    def lr(i: int) -> float:
        if i < cfg.warmup_iters:
            return max(0.0, cfg.base_lr - (cfg.warmup_iters - i) * cfg.warmup_factor)
        return cfg.base_lr * RULES.decay_factor ** ((i >= first) + (i >= second))

    return lr


def optimizer_groups(model: nn.Module) -> list[dict]:
    """Weights with weight decay at the learning rate; biases without it at BIAS_LR_FACTOR x (the reference's)."""
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    return [{"params": weights, "weight_decay": RULES.weight_decay},
            {"params": biases, "weight_decay": 0.0, "lr_scale": BIAS_LR_FACTOR}]


def seeded_loss(model: nn.Module, seed: int):
    """The loss of a batch, its images' anchor and RoI sampling seeded by (run seed, step, image id)."""
    steps = itertools.count()

    def loss_of(batch):
        images, targets = batch
        step = next(steps)
        seed_sampling(unwrap(model), [(seed, step, t["image_id"]) for t in targets])
        return loss(model, images, targets)

    return loss_of


def build_step(model: nn.Module, cfg: MaskRCNNConfig, precision: Precision, device: torch.device,
               seed: int = 0) -> TrainStep:
    optimizer = torch.optim.SGD(optimizer_groups(model), lr=cfg.base_lr, momentum=RULES.momentum,
                                **optimizer_kernels(device))
    return TrainStep(model, optimizer, seeded_loss(model, seed), precision=precision, device=device,
                     count=lambda batch: len(batch[0]), lr=warmup_multistep_lr(cfg))


def hyperparameters(cfg: MaskRCNNConfig, global_batch: int) -> dict:
    """Every key of closed_maskrcnn.yaml but eval_accuracy, and the solver's other settings."""
    return {
        "d_batch_size": cfg.batch_size,
        constants.GLOBAL_BATCH_SIZE: global_batch,
        constants.GRADIENT_ACCUMULATION_STEPS: 1,
        constants.OPT_NAME: "sgd_with_momentum",
        constants.OPT_BASE_LR: cfg.base_lr,
        constants.OPT_WEIGHT_DECAY: RULES.weight_decay,
        constants.OPT_LR_WARMUP_STEPS: cfg.warmup_iters,
        constants.OPT_LR_WARMUP_FACTOR: cfg.warmup_factor,
        constants.OPT_LR_DECAY_FACTOR: RULES.decay_factor,
        constants.OPT_LR_DECAY_STEPS: list(cfg.decay_steps),
        constants.NUM_IMAGE_CANDIDATES: cfg.num_image_candidates,
        constants.MIN_IMAGE_SIZE: cfg.min_size,
        constants.MAX_IMAGE_SIZE: cfg.max_size,
    }


def both_targets(quality: dict) -> bool:
    """Success needs box and mask AP at their targets at the same evaluation; one of them is not enough."""
    return quality["BBOX"] >= RULES.target_bbox and quality["SEGM"] >= RULES.target_segm


# Where this code's log deliberately differs from NVIDIA's v3.0 maskrcnn logs (compliance.preflight --compare).
DEVIATIONS = {
    constants.TRAIN_SAMPLES: "the training images, 117,266, in the unit of the RCPs (epochs of images); NVIDIA's "
    "logs its SOLVER_MAX_ITER there (40000 at 1 node, 20000 at 8)",
    constants.EVAL_SAMPLES: "the validation images, 5,000; NVIDIA's logs 1",
    constants.OPT_WEIGHT_DECAY: "logged here so the log states it (1e-4, the reference's); NVIDIA's does not",
    "throughput": "NVIDIA's trainer logs its measured images/s as a point event of this name; here it is in "
    "tracked_stats",
}


def run_plan(cfg: MaskRCNNConfig, runtime: RuntimeConfig, world_size: int, train_images: int = RULES.train_images,
             eval_images: int = RULES.eval_images) -> RunPlan:
    """What a run logs and where it evaluates: after every epoch (the rules), up to NUMEPOCHS."""
    global_batch = cfg.batch_size * world_size
    epoch_steps = detection.steps_per_epoch(train_images, global_batch)
    return RunPlan(
        hyperparameters=hyperparameters(cfg, global_batch),
        schedule=schedule.every_n_epochs(cfg.num_epochs, epoch_steps),
        eval_samples=eval_images, train_samples=train_images, samples_per_step=global_batch,
        reached=both_targets, target={"BBOX": RULES.target_bbox, "SEGM": RULES.target_segm},
        untrained={"BBOX": 0.0, "SEGM": 0.0})


def main(argv=None) -> int:
    args = parse_args(argv)
    with Session(RULES.benchmark, args, MaskRCNNConfig) as s:
        cfg = s.cfg
        s.require(not s.precision.fp8, "PRECISION", "maskrcnn has no FP8 path; use bf16")
        torch.manual_seed(s.seed + s.rank)  # per-rank sampling; DDP starts every rank from rank 0's weights
        checkpoint = detection.find_backbone(args.data_dir, args.backbone_checkpoint)  # named before any data
        train_loader, eval_loader, train, val, labels = data.build_loaders(
            args.data_dir, num_classes=RULES.num_classes, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch,
            num_workers=s.runtime.num_workers, rank=s.rank, world_size=s.world_size, seed=s.seed,
            pin_memory=s.device.type == "cuda")
        model = build_model(cfg, s.runtime.model_size)
        load_backbone(model, checkpoint)
        s.logger.event("init_checkpoint", str(checkpoint))
        model = parallelize(model, device=s.device, world_size=s.world_size, precision=s.precision,
                            torch_compile=s.runtime.torch_compile)
        to_device = lambda batch: data.to_device(batch, s.device)  # noqa: E731
        evaluator = Evaluator(data.labels_path(args.data_dir, "val"), labels, s.device, cfg.coco_eval)
        plan = run_plan(cfg, s.runtime, s.world_size, len(train), len(val))
        detection.checked_steps_per_epoch(train_loader, len(train), plan.global_batch)
        s.train_to_target(
            plan, build_step(model, cfg, s.precision, s.device, s.seed),
            loader.on_device(loader.epochs(train_loader), to_device),
            lambda: evaluator(unwrap(model), loader.on_device(eval_loader, to_device)))
    return s.exit_code


if __name__ == "__main__":
    dist.exit_after(main)
