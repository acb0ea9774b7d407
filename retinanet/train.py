"""RetinaNet (ResNeXt50-32x4d FPN) on the MLPerf OpenImages subset to mAP 0.34 (MLPerf Training v3.0 `ssd`, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 5 logged experiments):
    source config_DGXH100_001x08x032.sh && DATADIR=/data/open-images-v6-mlperf LOGDIR=$PWD/results NEXP=5 \\
        ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=5; source config_DGXH100_008x08x004.sh
    CONT=<image> DATADIR=/data/open-images-v6-mlperf LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

DATADIR holds {train,validation}/data/*.jpg and {train,validation}/labels/openimages-mlperf.json, and
backbone/resnext50_32x4d-7cdf4587.pth (torchvision's ImageNet weights; --backbone-checkpoint points
elsewhere). Adam (no weight decay) at LR, warmed up linearly from LR x 1e-3 over WARMUP_EPOCHS, global
batch BATCHSIZE x GPUs; COCO mAP over the whole validation set after every epoch; stop at 0.34.
"""
from __future__ import annotations

import argparse
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
from retinanet import data
from retinanet.config import RULES, RetinaNetConfig
from retinanet.evaluate import evaluate
from retinanet.model import RetinaNetShape, build_retinanet, load_backbone, loss, trainable_parameters

BENCH_DIR = Path(__file__).resolve().parent
RUN_CONFIG = RetinaNetConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, RetinaNetConfig, "OpenImages MLPerf root (see above)")
    parser.add_argument("--backbone-checkpoint", type=Path, default=None,
                        help="ImageNet weights in torchvision's layout (default: the one DATADIR/backbone/*.pth)")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def parallelize(model: nn.Module, *, device: torch.device, world_size: int, precision: Precision,
                torch_compile: bool) -> nn.Module:
    blocks = ["backbone.body.layer2", "backbone.body.layer3", "backbone.body.layer4", "backbone.fpn"]
    return parallelize_ddp(model, device=device, world_size=world_size, precision=precision,
                           compile_blocks=blocks if torch_compile else None)


def warmup_lr(cfg: RetinaNetConfig, steps_per_epoch: int):
    """The reference's linear warmup: LR x (1e-3 (1 - a) + a), a = step / (WARMUP_EPOCHS x steps per epoch)."""
    warmup = cfg.warmup_epochs * steps_per_epoch

    def lr(i: int) -> float:
        if i >= warmup:  # WARMUP_EPOCHS=0 (NVIDIA's 1-node config): the full LR from the first step
            return cfg.lr
        alpha = i / warmup
        return cfg.lr * (RULES.warmup_factor * (1 - alpha) + alpha)

    return lr


def build_step(model: nn.Module, cfg: RetinaNetConfig, precision: Precision, device: torch.device,
               steps_per_epoch: int) -> TrainStep:
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=cfg.lr, weight_decay=RULES.weight_decay,
                                 **optimizer_kernels(device))
    return TrainStep(model, optimizer, lambda batch: loss(model, *batch), precision=precision, device=device,
                     count=lambda batch: len(batch[0]), lr=warmup_lr(cfg, steps_per_epoch))


def hyperparameters(cfg: RetinaNetConfig, global_batch: int) -> dict:
    return {
        "local_batch_size": cfg.batch_size,
        constants.GLOBAL_BATCH_SIZE: global_batch,
        constants.GRADIENT_ACCUMULATION_STEPS: 1,
        constants.OPT_NAME: "adam",
        constants.OPT_BASE_LR: cfg.lr,
        constants.OPT_WEIGHT_DECAY: RULES.weight_decay,
        constants.OPT_LR_WARMUP_EPOCHS: cfg.warmup_epochs,
        constants.OPT_LR_WARMUP_FACTOR: RULES.warmup_factor,
        "image_size": cfg.image_size,
    }


# Where this code's log deliberately differs from NVIDIA's v3.0 ssd logs (compliance.preflight --compare).
DEVIATIONS = {
    constants.TRAIN_SAMPLES: "the training images, 1,170,301, in the unit of the RCPs (epochs of images); NVIDIA's "
    "logs one epoch's iterations there, ceil(1,170,301 / GBS): 4572 at GBS 256",
    constants.EVAL_SAMPLES: "the validation images, 24,781; NVIDIA's logs the evaluation's iterations, "
    "ceil(24,781 / GBS): 97 at GBS 256",
    "epoch_count": "NVIDIA logs its NUMEPOCHS (the epoch limit) as a point event of this name; here the limit is the "
    "evaluation schedule's length, and epoch_count is block_start metadata, as the rules use it",
    "first_epoch_num": "NVIDIA logs 0 as a point event beside its epoch_count; here it is block_start metadata",
    "image_size": "logged here so the log states the resize (the rules' 800 x 800); NVIDIA's does not",
}


def reached(mean_ap: float) -> bool:
    return mean_ap >= RULES.target_map


def run_plan(cfg: RetinaNetConfig, runtime: RuntimeConfig, world_size: int, train_images: int = RULES.train_images,
             eval_images: int = RULES.eval_images) -> RunPlan:
    """What a run logs and where it evaluates: after every epoch (the rules), up to NUMEPOCHS."""
    global_batch = cfg.batch_size * world_size
    epoch_steps = detection.steps_per_epoch(train_images, global_batch)
    return RunPlan(
        hyperparameters=hyperparameters(cfg, global_batch),
        schedule=schedule.every_n_epochs(cfg.num_epochs, epoch_steps),
        eval_samples=eval_images, train_samples=train_images, samples_per_step=global_batch,
        reached=reached, target=RULES.target_map, untrained=0.0)


def main(argv=None) -> int:
    args = parse_args(argv)
    with Session(RULES.benchmark, args, RetinaNetConfig) as s:
        cfg = s.cfg
        s.require(not s.precision.fp8, "PRECISION", "retinanet has no FP8 path; use bf16")
        torch.manual_seed(s.seed + s.rank)  # per-rank flips; DDP starts every rank from rank 0's weights
        # before reading any data: a missing start point is named first
        checkpoint = detection.find_backbone(args.data_dir, args.backbone_checkpoint)
        train_loader, eval_loader, train, val = data.build_loaders(
            args.data_dir, num_classes=RULES.num_classes, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch,
            num_workers=s.runtime.num_workers, rank=s.rank, world_size=s.world_size, seed=s.seed,
            pin_memory=s.device.type == "cuda")
        model = build_retinanet(RetinaNetShape.debug() if s.runtime.model_size == "debug" else RetinaNetShape(),
                                cfg.image_size)
        load_backbone(model, checkpoint)
        s.logger.event("init_checkpoint", str(checkpoint))
        model = parallelize(model, device=s.device, world_size=s.world_size, precision=s.precision,
                            torch_compile=s.runtime.torch_compile)
        to_device = lambda batch: data.to_device(batch, s.device)  # noqa: E731
        plan = run_plan(cfg, s.runtime, s.world_size, len(train), len(val))
        epoch_steps = detection.checked_steps_per_epoch(train_loader, len(train), plan.global_batch)
        s.train_to_target(
            plan, build_step(model, cfg, s.precision, s.device, epoch_steps),
            loader.on_device(loader.epochs(train_loader), to_device),
            lambda: evaluate(unwrap(model), loader.on_device(eval_loader, to_device),
                             data.labels_path(args.data_dir, "validation"), s.device, cfg.coco_eval))
    return s.exit_code


if __name__ == "__main__":
    dist.exit_after(main)
