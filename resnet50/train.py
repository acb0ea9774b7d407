"""Train ResNet-50 v1.5 to 75.9% top-1 on ImageNet (MLPerf Training v3.0, closed, LARS).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 5 logged experiments):
    source config_DGXH100_1x8x400x1.sh && DATADIR=/data/imagenet LOGDIR=$PWD/results NEXP=5 ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=5; source config_DGXH100_8x8x50x1.sh
    CONT=<image> DATADIR=/data/imagenet LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

The learning rate is set per global batch in the config files (NVIDIA's
published values: LR 11.0 at 8 x 400 = 3,200; 22.0 at 512 x 40 = 20,480),
warmed up linearly for WARMUP_EPOCHS and decayed as (1 - t)^2 to 1e-4 over
NUMEPOCHS.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from common import dist
from common.config import SystemConfig, load_configs, parse_run_arguments, run_arguments
from common.harness import Block, MLPerfRun, NonFiniteLoss, epoch_blocks, train_to_target
from common.mlperf_log import MLPerfLogger, constants
from resnet50 import data
from resnet50.config import RULES, ResNetConfig
from resnet50.model import build_resnet50
from resnet50.optim import LARS, lars_param_groups, poly_warmup_lr

BENCH_DIR = Path(__file__).resolve().parent
# How often (in steps) ranks agree on whether the loss stayed finite: a
# device sync plus one tiny all-reduce, so not every step on a GPU.
FINITE_CHECK_EVERY = 50


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, ResNetConfig, "ImageNet root with train/ and val/")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def apply_fast_paths(model: nn.Module, cfg: ResNetConfig, device: torch.device) -> nn.Module:
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.torch_compile:
        model = torch.compile(model)
    return model


class Trainer:
    """Holds the model, optimizer and loaders of one run; `train_block`/`evaluate` feed the harness."""

    def __init__(self, cfg: ResNetConfig, denv: dist.DistEnv, device: torch.device, loaders):
        self.cfg, self.device = cfg, device
        self.train_loader, self.val_loader, self.train_samples, self.eval_samples = loaders
        model = apply_fast_paths(build_resnet50(RULES.num_classes), cfg, device)
        self.model = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                      if denv.world_size > 1 else model)
        self.optimizer = LARS(lars_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                              momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                              eta=cfg.lars_eta, epsilon=RULES.lars_epsilon)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = cfg.num_epochs * self.steps_per_epoch
        self.warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        self.global_batch = cfg.batch_size * denv.world_size
        self.step = 0

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, images, labels):
        images = images.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def hyperparameters(self) -> dict:
        cfg = self.cfg
        return {
            constants.GLOBAL_BATCH_SIZE: self.global_batch,
            constants.GRADIENT_ACCUMULATION_STEPS: 1,
            constants.OPT_NAME: constants.LARS,
            constants.LARS_OPT_BASE_LEARNING_RATE: cfg.lr,
            constants.LARS_OPT_END_LR: RULES.end_lr,
            constants.LARS_OPT_LR_DECAY_POLY_POWER: RULES.poly_power,
            constants.LARS_OPT_LR_DECAY_STEPS: self.total_steps - self.warmup_steps,
            constants.LARS_EPSILON: RULES.lars_epsilon,
            constants.LARS_OPT_LEARNING_RATE_WARMUP_EPOCHS: cfg.warmup_epochs,
            constants.LARS_OPT_MOMENTUM: cfg.momentum,
            constants.LARS_OPT_WEIGHT_DECAY: cfg.weight_decay,
            constants.MODEL_BN_SPAN: cfg.batch_size,
            "label_smoothing": cfg.label_smoothing,
            "eval_offset": cfg.eval_offset,
        }

    def train_block(self, block: Block) -> int:
        self.model.train()
        stats = torch.zeros(3, device=self.device)  # loss sum, steps, non-finite steps
        steps_in_block = 0
        for epoch in range(block.first_epoch, block.last_epoch + 1):
            sampler = getattr(self.train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):  # DistributedSampler; DALI reshuffles by itself
                sampler.set_epoch(epoch)
            for images, labels in self.train_loader:
                images, labels = self._to_device(images, labels)
                lr = poly_warmup_lr(self.step, base_lr=self.cfg.lr, end_lr=RULES.end_lr,
                                    warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                                    power=RULES.poly_power)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                with self.autocast():
                    loss = self.criterion(self.model(images), labels)
                loss.backward()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                detached = loss.detach().float()
                stats += torch.stack([torch.nan_to_num(detached, nan=0.0, posinf=0.0, neginf=0.0),
                                      torch.ones_like(detached), (~torch.isfinite(detached)).float()])
                self.step += 1
                steps_in_block += 1
                if self.step % FINITE_CHECK_EVERY == 0:
                    self._check_finite(stats, epoch)
        self._check_finite(stats, block.last_epoch)
        return steps_in_block * self.global_batch

    def _check_finite(self, stats: torch.Tensor, epoch: int) -> None:
        totals = dist.all_reduce_sum(stats.clone())
        if totals[2] > 0:
            raise NonFiniteLoss(f"non-finite training loss in epoch {epoch} (step {self.step})")

    @torch.no_grad()
    def evaluate(self, block: Block) -> float:
        self.model.eval()
        counts = torch.zeros(2, device=self.device)  # correct, seen
        for images, labels in self.val_loader:
            images, labels = self._to_device(images, labels)
            with self.autocast():
                logits = self.model(images)
            counts[0] += (logits.argmax(dim=1) == labels).sum()
            counts[1] += labels.numel()
        dist.all_reduce_sum(counts)
        if int(counts[1]) != self.eval_samples:
            raise RuntimeError(f"evaluated {int(counts[1])} images, expected {self.eval_samples}")
        return float(counts[0] / counts[1])


def main(argv=None) -> int:
    args = parse_args(argv)
    system, cfg = load_configs(args.config, SystemConfig, ResNetConfig)
    denv = dist.read_dist_env()
    logger = MLPerfLogger(rank=denv.rank, filename=args.log_file)
    reached = False
    with MLPerfRun(logger, RULES.benchmark, system) as run:
        device, seed = dist.start(denv, cfg.device, args.seed)
        run.log_seed(seed)
        # Per-rank RNG streams, so ranks draw different augmentations; DDP
        # broadcasts rank 0's initial weights, so the model starts identical.
        torch.manual_seed(seed + denv.rank)
        if cfg.use_dali:
            from resnet50.dali import build_dali_loaders  # optional dependency, imported only when asked for
            loaders = build_dali_loaders(args.data_dir, cfg, denv, device, seed)
        else:
            loaders = data.build_loaders(
                args.data_dir, image_size=cfg.image_size, batch_size=cfg.batch_size,
                eval_batch_size=cfg.eval_batch, num_workers=cfg.num_workers, rank=denv.rank,
                world_size=denv.world_size, seed=seed, pin_memory=device.type == "cuda")
        trainer = Trainer(cfg, denv, device, loaders)
        logger.events(trainer.hyperparameters())
        logger.event("data_synthetic", data.is_synthetic(args.data_dir))
        run.start_timed_region()
        logger.events({constants.TRAIN_SAMPLES: trainer.train_samples,
                       constants.EVAL_SAMPLES: trainer.eval_samples})
        blocks = epoch_blocks(cfg.num_epochs, RULES.eval_period_epochs, cfg.eval_offset)
        reached = train_to_target(run, blocks, trainer.train_block, trainer.evaluate,
                                  reached=lambda top1: top1 >= RULES.target_top1)
    dist.shutdown()
    return 0 if reached else 1


if __name__ == "__main__":
    raise SystemExit(main())
