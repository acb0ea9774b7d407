"""GPT-3 175B continued pre-training to log-perplexity <= 2.69 (MLPerf Training v3.0, closed).

    source config_CPU_1x1x4x1x1.sh && DATADIR=data/gpt3-synthetic LOGDIR=results/gpt3 ../common/run_local.sh

DATADIR holds preproc_data/ (c4_en_6/c4_en_7 training files and the validation
subset in Megatron's .bin/.idx) and the checkpoint ckpt*-consumed_samples=0/
(or --init-checkpoint). The run starts from the checkpoint at the rules'
`init_checkpoint_step` of the LR schedule (warmup, then cosine to 10% of the
base LR, all in steps derived from the global batch), trains on a 0.5/0.5 blend
of the two training files with Adam (0.9, 0.95, 1e-8, weight decay 0.1,
clipping 1.0), and evaluates log-perplexity over the whole validation set every
24,576 sequences. MLPerf counts GPT-3's progress in tokens (`epoch_num`).

This training loop runs tensor parallel (TP, with sequence parallelism) or
data parallel (DDP); pipeline parallelism exists in `parallelize.py` but is not
wired into it yet, nor are TP and DP combined.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import dist
from common.config import SystemConfig, default_config_file, describe, load_configs
from common.harness import Block, MLPerfRun, NonFiniteLoss, train_to_target
from common.mlperf_log import MLPerfLogger, constants
from gpt3 import data
from gpt3.checkpoint import load_checkpoint
from gpt3.config import RULES, GPTRunConfig
from gpt3.model import GPT, GPTConfig
from gpt3.optim import clip_grad_norm_, cosine_warmup_lr
from gpt3.parallelize import build_mesh, parallelize
from gpt3.synthetic import SYNTHETIC_MARKER, TRAIN_FILES, VALID_FILE

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config variables (exported by config_*.sh):\n" + describe(SystemConfig, GPTRunConfig))
    parser.add_argument("--data-dir", type=Path, required=True, help="holds preproc_data/ and the checkpoint")
    parser.add_argument("--init-checkpoint", type=Path, default=None, help="ckpt*-consumed_samples=0 directory")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--log-file", type=Path, default=None)
    args = parser.parse_args(argv)
    args.config = args.config or default_config_file(BENCH_DIR)
    return args


def find_checkpoint(args) -> Path:
    if args.init_checkpoint:
        return args.init_checkpoint
    found = sorted(args.data_dir.glob("ckpt*-consumed_samples=0"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one {args.data_dir}/ckpt*-consumed_samples=0 directory "
                                f"(found {len(found)}); pass --init-checkpoint")
    return found[0]


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy (nats) of logits [B, S, V] for tokens [B, S + 1]."""
    return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())


class TrainSamples:
    """Global training sample g: a 0.5/0.5 blend of the two training files' shuffled GPT samples."""

    def __init__(self, files: list[data.IndexedDataset], num_samples: int, seq_len: int, seed: int):
        self.files = files
        self.which, self.within = data.blend([0.5] * len(files), num_samples)
        self.index = [data.build_samples(ds.sizes, int((self.which == i).sum()) + 1, seq_len, seed + i)
                      for i, ds in enumerate(files)]

    def batch(self, ids: range) -> torch.Tensor:
        return torch.from_numpy(np.stack([data.gpt_sample(self.files[self.which[g]], self.index[self.which[g]],
                                                          int(self.within[g])) for g in ids]))


def validation_batches(ds: data.IndexedDataset, seq_len: int, rank: int, world: int, batch: int):
    """The validation windows (gpt3.data.validation_windows), split by rank, in batches; and their count."""
    windows = data.validation_windows(ds, seq_len)
    if len(windows) == 0:
        raise data.DataError(f"{ds.bin_path}: fewer than {seq_len + 1} validation tokens")
    mine = torch.from_numpy(windows[rank::world])
    return list(mine.split(batch)), len(windows)


class Trainer:
    def __init__(self, cfg: GPTRunConfig, arch: GPTConfig, model: GPT, wrapped, optimizer, mesh,
                 device: torch.device, train: TrainSamples, valid, eval_count: int):
        self.cfg, self.arch, self.model, self.optimizer, self.device = cfg, arch, model, optimizer, device
        self.ddp = wrapped  # the model as parallelize() returned it (DDP, or the TP-sharded model itself)
        self.dp_rank, self.tp = mesh["dp"].get_local_rank(), mesh["tp"].size()
        self.gbs = cfg.minibs * mesh["dp"].size()
        self.train, self.valid, self.eval_count = train, valid, eval_count
        self.base_lr = RULES.base_lr(self.gbs)
        self.init_step = RULES.init_checkpoint_step(self.gbs)
        self.step = 0  # steps of this run
        self.samples = 0

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def hyperparameters(self) -> dict:
        return {
            constants.GLOBAL_BATCH_SIZE: self.gbs,
            constants.GRADIENT_ACCUMULATION_STEPS: self.cfg.accumulation_steps(),
            "max_sequence_length": self.arch.seq_len,
            constants.OPT_NAME: "adam",
            constants.OPT_BASE_LR: self.base_lr,
            "opt_end_learning_rate": self.base_lr * RULES.end_lr_fraction,
            "opt_learning_rate_decay_steps": int(RULES.schedule_steps(self.gbs)),
            constants.OPT_LR_WARMUP_STEPS: int(RULES.warmup_steps(self.gbs)),
            "opt_learning_rate_decay_schedule": "cosine with linear warmup",
            "opt_adam_beta_1": RULES.adam_betas[0],
            "opt_adam_beta_2": RULES.adam_betas[1],
            "opt_adam_epsilon": RULES.adam_eps,
            "opt_gradient_clip_norm": RULES.grad_clip,
            constants.OPT_WEIGHT_DECAY: RULES.weight_decay,
            "init_checkpoint_step": self.init_step,
        }

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch: this rank's MINIBS sequences in micro-batches."""
        lr = cosine_warmup_lr(self.init_step + self.step + 1, base_lr=self.base_lr,
                              min_lr=self.base_lr * RULES.end_lr_fraction,
                              warmup_steps=RULES.warmup_steps(self.gbs), total_steps=RULES.schedule_steps(self.gbs))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        first = self.step * self.gbs + self.dp_rank * self.cfg.minibs  # TP ranks share their batch
        micro, accum = self.cfg.micro_batch_size, self.cfg.accumulation_steps()
        total = torch.zeros((), device=self.device)
        for m in range(accum):
            tokens = self.train.batch(range(first + m * micro, first + (m + 1) * micro)).to(self.device)
            sync = self.ddp.no_sync() if self.ddp is not self.model and m < accum - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    loss = lm_loss(self.ddp(tokens[:, :-1]), tokens) / accum
                loss.backward()
            total += loss.detach()
        clip_grad_norm_(list(self.model.parameters()), RULES.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total

    def train_block(self, block: Block) -> int:
        self.model.train()
        end_step = math.ceil(block.last_epoch / (self.gbs * self.arch.seq_len))
        losses = torch.zeros(2, device=self.device)
        steps = 0
        while self.step < end_step:
            loss = self.train_step()
            losses += torch.stack([torch.nan_to_num(loss, nan=0.0, posinf=0.0), (~torch.isfinite(loss)).float()])
            steps += 1
        totals = dist.all_reduce_sum(losses)
        if totals[1] > 0:
            raise NonFiniteLoss(f"non-finite training loss before step {self.step}")
        self.samples += steps * self.gbs
        return steps * self.gbs

    @torch.no_grad()
    def evaluate(self, block: Block) -> float:
        """Log-perplexity: mean next-token cross entropy over every validation token (all ranks)."""
        self.model.eval()
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # nats, tokens
        for tokens in self.valid:
            tokens = tokens.to(self.device)
            with self.autocast():
                logits = self.model(tokens[:, :-1])
            sums[0] += F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="sum")
            sums[1] += tokens[:, 1:].numel()
        dist.all_reduce_sum(sums)
        sums /= self.tp  # every tensor-parallel rank evaluated the same windows
        if int(sums[1]) != self.eval_count * self.arch.seq_len:
            raise RuntimeError(f"evaluated {int(sums[1])} tokens, expected {self.eval_count * self.arch.seq_len}")
        return float(sums[0] / sums[1])


def main(argv=None) -> int:
    args = parse_args(argv)
    system, cfg = load_configs(args.config, SystemConfig, GPTRunConfig)
    denv = dist.read_dist_env()
    logger = MLPerfLogger(rank=denv.rank, filename=args.log_file)
    reached = False
    with MLPerfRun(logger, RULES.benchmark, system) as run:
        device, seed = dist.start(denv, cfg.device, args.seed)
        run.log_seed(seed)
        if cfg.pipeline_parallel > 1:
            raise NotImplementedError("the training loop has no pipeline parallelism yet (gpt3/README.md)")
        mesh = build_mesh(device, denv.world_size, cfg.tensor_parallel)
        torch.manual_seed(seed)
        arch = GPTConfig.cpu() if cfg.model_size == "cpu" else GPTConfig()
        model = GPT(arch).to(device)
        checkpoint = find_checkpoint(args)
        load_checkpoint(model, None, checkpoint)  # the whole model, then sharded by parallelize()
        wrapped = parallelize(model, mesh, device)
        # after parallelize: TP replaces parameters with DTensors (mixed with plain ones, hence no foreach)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, betas=RULES.adam_betas, eps=RULES.adam_eps,
                                      weight_decay=RULES.weight_decay, foreach=False)
        load_checkpoint(model, optimizer, checkpoint, weights=False)  # the Adam moments, sharded alike
        logger.event("init_checkpoint", str(checkpoint))
        root = args.data_dir / "preproc_data"
        gbs = cfg.global_batch(denv.world_size)
        train = TrainSamples([data.IndexedDataset(root / name) for name in TRAIN_FILES], cfg.max_samples + gbs,
                             arch.seq_len, seed)
        valid, eval_count = validation_batches(data.IndexedDataset(root / VALID_FILE), arch.seq_len,
                                               mesh["dp"].get_local_rank(), mesh["dp"].size(), cfg.micro_batch_size)
        trainer = Trainer(cfg, arch, model, wrapped, optimizer, mesh, device, train, valid, eval_count)
        logger.events(trainer.hyperparameters())
        logger.event("data_synthetic", (args.data_dir / SYNTHETIC_MARKER).is_file())
        run.start_timed_region()
        logger.event(constants.EVAL_SAMPLES, eval_count)
        every = RULES.eval_every_steps(gbs) if cfg.eval_every == 0 else math.ceil(cfg.eval_every / gbs)
        tokens_per_block = every * gbs * arch.seq_len
        blocks = [Block(k * tokens_per_block, tokens_per_block)
                  for k in range(cfg.max_samples // (every * gbs))]
        reached = train_to_target(run, blocks, trainer.train_block, trainer.evaluate,
                                  reached=lambda ppl: ppl <= RULES.target_log_perplexity,
                                  progress=lambda block: trainer.samples * arch.seq_len)
        logger.event(constants.TRAIN_SAMPLES, trainer.samples)
    dist.shutdown()
    return 0 if reached else 1


if __name__ == "__main__":
    raise SystemExit(main())
