"""BERT-large phase-2 pre-training to 72.0% masked-LM accuracy (MLPerf Training v3.0, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 10 logged experiments):
    source config_DGXH100_1x8x48x1_pack.sh && DATADIR=/data/bert LOGDIR=$PWD/results NEXP=10 ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=10; source config_DGXH100_8x8x72x1.sh
    CONT=<image> DATADIR=/data/bert LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

DATADIR holds packed_data/ (or varlength/ for PACKING_FACTOR=1),
eval_varlength/part_eval_10k.hdf5 and phase1/model.ckpt-28252.pt; --train-dir,
--eval-file and --init-checkpoint point elsewhere. The run starts from the
phase-1 checkpoint, trains with LAMB (global batch = rows x packing factor x
accumulation x GPUs sequences, NVIDIA's published LR/betas per config), and
evaluates masked-LM accuracy on the whole eval set every EVAL_ITER_SAMPLES
sequences (at most the rules' floor(0.05*(230.23*GBS+3e6)/25000)*25000).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from bert import data
from bert.checkpoint import load_checkpoint
from bert.config import RULES, BertRunConfig
from bert.model import BertConfig, BertForPreTraining
from bert.optim import build_lamb, warmup_poly_lr
from common import dist
from common.config import SystemConfig, load_configs, parse_run_arguments, run_arguments
from common.harness import Block, MLPerfRun, NonFiniteLoss, train_to_target
from common.mlperf_log import MLPerfLogger, constants

BENCH_DIR = Path(__file__).resolve().parent
TINY_MAX_PREDICTIONS = 20  # 15% of 128 tokens, BERT's phase-1 setting; the synthetic corpus uses it


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, BertRunConfig, "BERT data root (see above)")
    parser.add_argument("--train-dir", type=Path, default=None, help="training shards (default: under --data-dir)")
    parser.add_argument("--eval-file", type=Path, default=None, help="variable-length eval HDF5 file")
    parser.add_argument("--init-checkpoint", type=Path, default=None, help="phase-1 checkpoint {'model': ...}")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def model_config(cfg: BertRunConfig) -> tuple[BertConfig, int]:
    """The architecture and the masked-LM predictions per sequence of this run."""
    if cfg.model_size == "tiny":
        return dataclasses.replace(BertConfig.tiny(), dropout=cfg.dropout), TINY_MAX_PREDICTIONS
    return BertConfig(dropout=cfg.dropout), RULES.max_predictions_per_seq


def find_checkpoint(args: argparse.Namespace) -> Path:
    if args.init_checkpoint:
        return args.init_checkpoint
    found = sorted((args.data_dir / data.PHASE1_DIR).glob("model.ckpt-*.pt"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one {args.data_dir / data.PHASE1_DIR}/model.ckpt-*.pt "
                                f"(found {len(found)}); pass --init-checkpoint")
    return found[0]


def pretraining_loss(mlm_logits, nsp_logits, batch) -> torch.Tensor:
    """Masked-LM cross entropy (mean over real predictions) + next-sentence cross entropy."""
    mlm = F.cross_entropy(mlm_logits.flatten(0, 1).float(), batch["masked_ids"].flatten(), ignore_index=-1)
    nsp = F.cross_entropy(nsp_logits.flatten(0, 1).float(), batch["nsp_labels"].flatten(), ignore_index=-1)
    return mlm + nsp


def forward(model: nn.Module, batch: dict):
    return model(batch["input_ids"], batch["token_type_ids"], batch["seq_lens"], batch["masked_positions"])


def apply_fast_paths(model: nn.Module, cfg: BertRunConfig, device: torch.device) -> nn.Module:
    model.to(device)
    if cfg.precision == "fp8":
        from bert.te import apply_transformer_engine  # optional dependency, imported only when asked for
        apply_transformer_engine(model, device)
    if cfg.torch_compile:
        model = torch.compile(model)
    return model


def sample_blocks(eval_every: int, max_samples: int) -> list[Block]:
    """Blocks of training ending at the eval points eval_every, 2*eval_every, ... < max_samples.

    For BERT an "epoch" is a training sequence: blocks are counted in samples.
    """
    return [Block(first, eval_every) for first in range(1, max_samples - eval_every + 1, eval_every)]


class Trainer:
    """Model, optimizer and data of one run; `train_block`/`evaluate` feed the harness."""

    def __init__(self, cfg: BertRunConfig, model: nn.Module, denv: dist.DistEnv, device: torch.device,
                 train_loader, eval_batches: list[dict], eval_samples: int, max_predictions: int):
        self.cfg, self.device, self.max_predictions = cfg, device, max_predictions
        self.model = model
        self.ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                    if denv.world_size > 1 else model)
        self.optimizer = build_lamb(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                                    fused=cfg.fused_lamb, device=device)
        self.train_iter = iter(train_loader)
        self.eval_batches = [self._to_device(b) for b in eval_batches]  # kept on the device, as NVIDIA does
        self.eval_samples = eval_samples
        self.global_batch = cfg.global_batch(denv.world_size)
        self.eval_every = cfg.eval_every(denv.world_size)
        self.step = 0
        self.samples_trained = 0  # all ranks, updated at block ends (a host sync)
        self._stats = torch.zeros(2, device=device)  # local sequences trained, non-finite losses

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def autocast(self):
        if self.cfg.precision in ("bf16", "fp8"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fp8(self):
        if self.cfg.precision == "fp8":
            from bert.te import fp8_autocast
            return fp8_autocast()
        return contextlib.nullcontext()

    def hyperparameters(self) -> dict:
        cfg = self.cfg
        return {
            constants.GLOBAL_BATCH_SIZE: self.global_batch,
            constants.GRADIENT_ACCUMULATION_STEPS: cfg.grad_accum,
            constants.OPT_NAME: constants.LAMB,
            constants.OPT_BASE_LR: cfg.lr,
            constants.OPT_LAMB_EPSILON: RULES.lamb_epsilon,
            constants.OPT_LAMB_BETA_1: cfg.beta1,
            constants.OPT_LAMB_BETA_2: cfg.beta2,
            constants.OPT_LAMB_WEIGHT_DECAY: cfg.weight_decay,
            constants.OPT_LR_TRAINING_STEPS: cfg.max_steps,
            constants.OPT_LR_WARMUP_STEPS: cfg.schedule_warmup_steps,
            constants.NUM_WARMUP_STEPS: cfg.schedule_warmup_steps,
            constants.START_WARMUP_STEP: cfg.schedule_start_warmup_step,
            constants.OPT_LAMB_LR_DECAY_POLY_POWER: RULES.decay_power,
            "max_predictions_per_seq": self.max_predictions,
            "packing_factor": cfg.packing_factor,
            "eval_interval_samples": self.eval_every,
        }

    def train_step(self) -> None:
        cfg = self.cfg
        self.step += 1
        lr = warmup_poly_lr(self.step, base_lr=cfg.lr, warmup_steps=cfg.schedule_warmup_steps,
                            start_warmup_step=cfg.schedule_start_warmup_step, total_steps=cfg.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for micro in range(cfg.grad_accum):
            batch = self._to_device(next(self.train_iter))
            # gradients are all-reduced once per optimizer step, on the last micro-batch
            sync = self.ddp.no_sync() if self.ddp is not self.model and micro < cfg.grad_accum - 1 \
                else contextlib.nullcontext()
            with sync:
                with self.autocast(), self.fp8():
                    loss = pretraining_loss(*forward(self.ddp, batch), batch) / cfg.grad_accum
                loss.backward()
            self._stats[0] += (batch["seq_lens"] > 0).sum()
            self._stats[1] += ~torch.isfinite(loss.detach())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def train_block(self, block: Block) -> int:
        """Train up to the block's eval point: step ceil(samples / nominal GBS), as NVIDIA counts."""
        self.model.train()
        end_step = math.ceil(block.last_epoch / self.global_batch)
        while self.step < end_step:
            self.train_step()
        totals = dist.all_reduce_sum(self._stats.clone())  # host sync: the block's time is real
        self._stats.zero_()
        if totals[1] > 0:
            raise NonFiniteLoss(f"non-finite training loss before step {self.step}")
        self.samples_trained += int(totals[0])
        return int(totals[0])

    @torch.no_grad()
    def evaluate(self, block: Block) -> float:
        """Masked-LM accuracy over every masked token of the whole eval set (all ranks)."""
        self.model.eval()
        counts = torch.zeros(3, device=self.device)  # correct, predictions, sequences
        for batch in self.eval_batches:
            with self.autocast(), self.fp8():
                mlm_logits, _ = forward(self.model, batch)
            valid = batch["masked_ids"] >= 0
            counts[0] += ((mlm_logits.argmax(dim=-1) == batch["masked_ids"]) & valid).sum()
            counts[1] += valid.sum()
            counts[2] += (batch["seq_lens"] > 0).sum()
        dist.all_reduce_sum(counts)
        if int(counts[2]) != self.eval_samples:
            raise RuntimeError(f"evaluated {int(counts[2])} sequences, expected {self.eval_samples}")
        return float(counts[0] / counts[1])


def main(argv=None) -> int:
    args = parse_args(argv)
    system, cfg = load_configs(args.config, SystemConfig, BertRunConfig)
    denv = dist.read_dist_env()
    logger = MLPerfLogger(rank=denv.rank, filename=args.log_file)
    reached = False
    with MLPerfRun(logger, RULES.benchmark, system) as run:
        device, seed = dist.start(denv, cfg.device, args.seed)
        run.log_seed(seed)
        torch.manual_seed(seed + denv.rank)  # per-rank dropout streams; all ranks load the same checkpoint
        arch, max_predictions = model_config(cfg)
        model = BertForPreTraining(arch)
        checkpoint = find_checkpoint(args)
        load_checkpoint(model, checkpoint)
        logger.event("init_checkpoint", str(checkpoint))
        model = apply_fast_paths(model, cfg, device)
        train_dir = args.train_dir or args.data_dir / (data.PACKED_DIR if cfg.packing_factor > 1
                                                       else data.VARLENGTH_DIR)
        train_loader = data.build_train_loader(
            data.list_shards(train_dir), batch_size=cfg.batch_size, seq_len=arch.max_positions,
            max_predictions=max_predictions, rank=denv.rank, world_size=denv.world_size, seed=seed,
            num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
        eval_batches, eval_samples = data.load_eval_batches(
            args.eval_file or args.data_dir / data.EVAL_FILE, batch_size=cfg.eval_batch_size,
            seq_len=arch.max_positions, max_predictions=max_predictions, rank=denv.rank,
            world_size=denv.world_size)
        trainer = Trainer(cfg, model, denv, device, train_loader, eval_batches, eval_samples, max_predictions)
        logger.events(trainer.hyperparameters())
        logger.event("data_synthetic", data.is_synthetic(args.data_dir))
        run.start_timed_region()
        logger.event(constants.EVAL_SAMPLES, eval_samples)
        blocks = [b for b in sample_blocks(trainer.eval_every, cfg.max_samples)
                  if math.ceil(b.last_epoch / trainer.global_batch) <= cfg.max_steps]
        reached = train_to_target(run, blocks, trainer.train_block, trainer.evaluate,
                                  reached=lambda acc: acc >= RULES.target_mlm_accuracy,
                                  progress=lambda block: trainer.samples_trained)
        logger.event(constants.TRAIN_SAMPLES, trainer.samples_trained)
    dist.shutdown()
    return 0 if reached else 1


if __name__ == "__main__":
    raise SystemExit(main())
