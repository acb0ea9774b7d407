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

from common import detection, loader, schedule
from common.config import parse_run_arguments, run_arguments
from common.mlperf_log import constants
from common.parallelize import parallelize_ddp, unwrap
from common.precision import Precision
from common.session import Session
from common.step import TrainStep
from retinanet import data
from retinanet.config import RULES, RetinaNetConfig
from retinanet.evaluate import evaluate
from retinanet.model import RetinaNetShape, build_retinanet, load_backbone, loss, trainable_parameters

BENCH_DIR = Path(__file__).resolve().parent


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
    optimizer = torch.optim.Adam(trainable_parameters(model), lr=cfg.lr, weight_decay=RULES.weight_decay)
    return TrainStep(model, optimizer, lambda batch: loss(model, *batch), precision=precision, device=device,
                     count=lambda batch: len(batch[0]), lr=warmup_lr(cfg, steps_per_epoch))


def hyperparameters(cfg: RetinaNetConfig, global_batch: int) -> dict:
    return {
        constants.GLOBAL_BATCH_SIZE: global_batch,
        constants.GRADIENT_ACCUMULATION_STEPS: 1,
        constants.OPT_NAME: "adam",
        constants.OPT_BASE_LR: cfg.lr,
        constants.OPT_WEIGHT_DECAY: RULES.weight_decay,
        constants.OPT_LR_WARMUP_EPOCHS: cfg.warmup_epochs,
        constants.OPT_LR_WARMUP_FACTOR: RULES.warmup_factor,
        "image_size": cfg.image_size,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    with Session(RULES.benchmark, args, RetinaNetConfig) as s:
        cfg = s.cfg
        s.require(not s.precision.fp8, "PRECISION", "retinanet has no FP8 path; use bf16")
        torch.manual_seed(s.seed + s.rank)  # per-rank flips; DDP starts every rank from rank 0's weights
        checkpoint = detection.find_backbone(args.data_dir, args.backbone_checkpoint)  # before reading any data: a missing start point is named first
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
        steps_per_epoch = len(train_loader)
        s.train_to_target(
            schedule.every_n_epochs(cfg.num_epochs, steps_per_epoch),  # rules: evaluate every epoch
            build_step(model, cfg, s.precision, s.device, steps_per_epoch),
            loader.on_device(loader.epochs(train_loader), to_device),
            lambda: evaluate(unwrap(model), loader.on_device(eval_loader, to_device),
                             data.labels_path(args.data_dir, "validation"), s.device, cfg.coco_eval),
            reached=lambda mean_ap: mean_ap >= RULES.target_map,
            hyperparameters=hyperparameters(cfg, cfg.batch_size * s.world_size),
            train_samples=len(train), eval_samples=len(val))
    return s.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
