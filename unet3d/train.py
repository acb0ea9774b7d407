"""3D U-Net on KiTS19 to a mean Dice of 0.908 (MLPerf Training v3.0 `unet3d`, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 40 logged experiments):
    source config_DGXH100_1x8x7.sh && DATADIR=/data/kits19/preprocessed LOGDIR=$PWD/results NEXP=40 \\
        ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=40; source config_DGXH100_7x8x1.sh
    CONT=<image> DATADIR=/data/kits19/preprocessed LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

DATADIR holds case_XXXXX_{x,y}.npy (`python3 -m unet3d.preprocess` writes them from raw KiTS19). An epoch
is one 128^3 patch of every training case (168 samples; global batch BATCH_SIZE x GPUs, the last
incomplete batch dropped). SGD with Nesterov momentum (OPTIMIZER=nag) at LR, warmed up linearly per
step from INIT_LEARNING_RATE over LR_WARMUP_EPOCHS; sliding-window evaluation of the 42 validation
volumes from START_EVAL_AT every EVALUATE_EVERY epochs; stop at mean Dice 0.908, give up after
MAX_EPOCHS or when the Dice falls below 1e-6 (the reference's "model diverged").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn as nn

from common import dist, loader, schedule
from common.config import ConfigError, RuntimeConfig, parse_run_arguments, run_arguments
from common.mlperf_log import constants
from common.parallelize import parallelize_ddp, unwrap
from common.precision import Precision
from common.session import RunPlan, Session
from common.step import TrainStep, optimizer_kernels
from unet3d import data
from unet3d.config import RULES, UNet3DConfig, steps_per_epoch
from unet3d.evaluate import Evaluator
from unet3d.model import UNetShape, build_unet3d, dice_ce_loss

BENCH_DIR = Path(__file__).resolve().parent
RUN_CONFIG = UNet3DConfig


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, UNet3DConfig, "preprocessed KiTS19 (case_XXXXX_x.npy, case_XXXXX_y.npy)")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def parallelize(model: nn.Module, *, device: torch.device, world_size: int, precision: Precision,
                torch_compile: bool) -> nn.Module:
    blocks = ["input_block", *(f"downsample.{i}" for i in range(len(model.downsample))), "bottleneck",
              *(f"upsample.{i}" for i in range(len(model.upsample)))]
    return parallelize_ddp(model, device=device, world_size=world_size, precision=precision,
                           compile_blocks=blocks if torch_compile else None)


def learning_rate(cfg: UNet3DConfig, steps_per_epoch: int):
    """Linear warmup per step from INIT_LEARNING_RATE to LR over LR_WARMUP_EPOCHS (NVIDIA's MXNet scheduler;
    the reference steps it once per epoch), then LR x LR_DECAY_FACTOR^(boundaries passed)."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    boundaries = [epoch * steps_per_epoch for epoch in cfg.decay_boundaries]

    def lr(step: int) -> float:
        if step < warmup:
            return cfg.init_lr + (cfg.lr - cfg.init_lr) * step / warmup
        return cfg.lr * cfg.decay_factor ** sum(step >= b for b in boundaries)

    return lr


def build_step(model: nn.Module, cfg: UNet3DConfig, precision: Precision, device: torch.device,
               steps_per_epoch: int) -> TrainStep:
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.optimizer == "nag", weight_decay=cfg.weight_decay,
                                **optimizer_kernels(device))
    return TrainStep(model, optimizer, lambda batch: dice_ce_loss(model(batch[0]), batch[1]), precision=precision,
                     device=device, count=lambda batch: len(batch[0]), lr=learning_rate(cfg, steps_per_epoch))


def hyperparameters(cfg: UNet3DConfig, global_batch: int, samples_per_epoch: int) -> dict:
    patch = [cfg.input_shape] * 3
    return {
        constants.GLOBAL_BATCH_SIZE: global_batch,
        constants.GRADIENT_ACCUMULATION_STEPS: 1,
        constants.OPT_NAME: cfg.optimizer,
        constants.OPT_BASE_LR: cfg.lr,
        constants.OPT_LR_WARMUP_EPOCHS: cfg.warmup_epochs,
        "opt_initial_learning_rate": cfg.init_lr,  # a hyperparameter of the unet3d RCPs
        constants.OPT_LR_DECAY_BOUNDARY_EPOCHS: cfg.decay_boundaries,
        constants.OPT_LR_DECAY_FACTOR: cfg.decay_factor,
        constants.OPT_WEIGHT_DECAY: cfg.weight_decay,
        "opt_momentum": cfg.momentum,
        "oversampling": RULES.oversampling,
        "training_input_shape": patch,
        "validation_input_shape": patch,
        "validation_overlap": RULES.validation_overlap,
        "samples_per_epoch": samples_per_epoch,
    }


# Where this code's log deliberately differs from NVIDIA's v3.0 3D U-Net logs (compliance.preflight --compare).
DEVIATIONS = {
    "opt_initial_learning_rate": "the LR the warmup starts from, a hyperparameter of every unet3d RCP "
    "(rcps_unet3d.json: 1e-4), logged so the log states it; NVIDIA's MXNet logs do not",
}


def reached(mean_dice: float) -> bool:
    return mean_dice >= RULES.target_dice


def diverged(mean_dice: float) -> bool:
    return mean_dice < RULES.diverged_dice


def run_plan(cfg: UNet3DConfig, runtime: RuntimeConfig, world_size: int, train_cases: int = RULES.train_samples,
             eval_cases: int = RULES.eval_samples) -> RunPlan:
    """What a run logs and where it evaluates: from START_EVAL_AT every EVALUATE_EVERY epochs (the rules' 1000
    and 20 epochs of 168 samples when left at 0), blocks of EVALUATE_EVERY epochs before the first."""
    global_batch = cfg.batch_size * world_size
    epoch_steps = steps_per_epoch(train_cases, global_batch)
    if epoch_steps == 0:
        raise ConfigError(f"BATCH_SIZE: {cfg.batch_size} x {world_size} processes is more than the {train_cases} "
                          "training cases: no full batch")
    samples_per_epoch = epoch_steps * global_batch
    start, every = cfg.eval_cadence(samples_per_epoch)
    return RunPlan(
        hyperparameters=hyperparameters(cfg, global_batch, samples_per_epoch),
        schedule=schedule.from_epoch(start, every, cfg.max_epochs, epoch_steps),
        eval_samples=eval_cases, train_samples=train_cases, samples_per_step=global_batch,
        reached=reached, target=RULES.target_dice,
        untrained=0.5,  # below the target, above the Dice at which the run counts as diverged
        diverged=diverged)


def main(argv=None) -> int:
    args = parse_args(argv)
    with Session(RULES.benchmark, args, UNet3DConfig) as s:
        cfg = s.cfg
        s.require(not s.precision.fp8, "PRECISION", "unet3d has no FP8 path; use bf16")
        shape = UNetShape.debug() if s.runtime.model_size == "debug" else UNetShape()
        s.require(cfg.input_shape % shape.divisor == 0 and cfg.input_shape >= 2 * shape.divisor, "INPUT_SHAPE",
                  f"{cfg.input_shape} must be a multiple of {shape.divisor} and at least {2 * shape.divisor} for the "
                  f"{s.runtime.model_size} model ({len(shape.filters)} stride-2 stages)")
        torch.manual_seed(s.seed)  # DDP starts every rank from rank 0's weights
        train_loader, eval_loader, train, val = data.build_loaders(
            args.data_dir, patch=cfg.input_shape, batch_size=cfg.batch_size, num_workers=s.runtime.num_workers,
            rank=s.rank, world_size=s.world_size, seed=s.seed, pin_memory=s.device.type == "cuda")
        plan = run_plan(cfg, s.runtime, s.world_size, len(train), len(val))
        epoch_steps = steps_per_epoch(len(train), plan.global_batch)
        if len(train_loader) != epoch_steps:
            raise RuntimeError(f"the train loader has {len(train_loader)} steps per epoch, the plan {epoch_steps}")
        model = parallelize(build_unet3d(shape), device=s.device, world_size=s.world_size, precision=s.precision,
                            torch_compile=s.runtime.torch_compile)
        evaluator = Evaluator(cfg.input_shape, cfg.val_batch_size, s.device)
        to_device = lambda batch: data.to_device(batch, s.device)  # noqa: E731
        s.train_to_target(plan, build_step(model, cfg, s.precision, s.device, epoch_steps),
                          loader.on_device(loader.epochs(train_loader), to_device),
                          lambda: evaluator(unwrap(model), loader.on_device(eval_loader, to_device)))
    return s.exit_code


if __name__ == "__main__":
    dist.exit_after(main)
