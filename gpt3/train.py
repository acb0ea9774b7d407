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

Parallelism (gpt3/parallelize.py) comes from the config: TENSOR_MODEL_PARALLEL
(with sequence parallelism), PIPELINE_MODEL_PARALLEL x INTERLEAVED_PIPELINE
stages (MINIBS / MICRO_BATCH_SIZE micro-batches per step through 1F1B or
interleaved 1F1B), and FSDP2 over the data-parallel ranks that remain. The
model is built on the `meta` device, parallelized, and filled from the
checkpoint shard by shard. PRECISION=fp8 runs the blocks' linears through
Transformer Engine (gpt3/te.py); on a GPU Adam is PyTorch's fused kernel.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from common import dist
from common.config import SystemConfig, load_configs, parse_run_arguments, run_arguments
from common.harness import Block, MLPerfRun, NonFiniteLoss, train_to_target
from common.mlperf_log import MLPerfLogger, constants
from gpt3 import data
from gpt3.checkpoint import load_checkpoint
from gpt3.config import RULES, GPTRunConfig
from gpt3.model import GPT, GPTConfig
from gpt3.optim import clip_stage_grads, cosine_warmup_lr
from gpt3.parallelize import (build_mesh, build_schedule, embedding_group, parallelize_stage, pipeline_stages,
                              set_gradient_sync, sync_tied_embedding_grads)
from gpt3.synthetic import SYNTHETIC_MARKER, TRAIN_FILES, VALID_FILE

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, GPTRunConfig, "holds preproc_data/ and the checkpoint")
    parser.add_argument("--init-checkpoint", type=Path, default=None, help="ckpt*-consumed_samples=0 directory")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def find_checkpoint(args) -> Path:
    if args.init_checkpoint:
        return args.init_checkpoint
    found = sorted(args.data_dir.glob("ckpt*-consumed_samples=0"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one {args.data_dir}/ckpt*-consumed_samples=0 directory "
                                f"(found {len(found)}); pass --init-checkpoint")
    return found[0]


IGNORE = -100  # target of a padding row


class LMLoss:
    """Next-token cross entropy (nats) of logits [B, S, V] against targets [B, S]; -100 marks padding.

    Mean over the tokens for training; `reduction = "sum"` while evaluating
    (the pipeline schedule calls the same object on its last stage).
    """

    reduction = "mean"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                               reduction=self.reduction)


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
    """The validation windows (gpt3.data.validation_windows) split by data-parallel rank, in (inputs, targets)
    batches of `batch`; and the number of windows.

    Every rank gets the same number of full batches (FSDP2 and the pipeline
    schedule need the same calls on every rank); the padding rows have
    targets IGNORE and count for nothing.
    """
    windows = data.validation_windows(ds, seq_len)
    if len(windows) == 0:
        raise data.DataError(f"{ds.bin_path}: fewer than {seq_len + 1} validation tokens")
    mine = torch.from_numpy(windows[rank::world]).long()
    per_rank = -(-len(windows) // world)
    rows = -(-per_rank // batch) * batch
    inputs = torch.zeros(rows, seq_len, dtype=torch.long)
    targets = torch.full((rows, seq_len), IGNORE, dtype=torch.long)
    inputs[:len(mine)], targets[:len(mine)] = mine[:, :-1], mine[:, 1:]
    return list(zip(inputs.split(batch), targets.split(batch))), len(windows)


def build_model(arch: GPTConfig, cfg: GPTRunConfig, mesh, device: torch.device):
    """This rank's pipeline stages [(index, module)], built on `meta`, parallelized and materialised (no values)."""
    with torch.device("meta"):
        model = GPT(arch)
    if cfg.precision == "fp8":
        from gpt3.te import apply_transformer_engine

        apply_transformer_engine(model, cfg, device)
    pp = cfg.pipeline_parallel
    stages = (pipeline_stages(model, mesh["pp"].get_local_rank(), pp, cfg.interleaved_pipeline) if pp > 1
              else [(0, model)])
    for _, stage in stages:
        parallelize_stage(stage, mesh, pipelined=pp > 1)
        stage.to_empty(device=device)
    return stages


def build_optimizer(modules, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95, 1e-8, weight decay 0.1 on every parameter: NVIDIA's `do_layer_norm_weight_decay: True`).

    One parameter group per device mesh, so the multi-tensor kernels (fused on
    a GPU) never mix DTensors of different meshes.
    """
    groups: dict = {}
    for module in modules:
        for p in module.parameters():
            groups.setdefault(p.device_mesh if isinstance(p, DTensor) else None, []).append(p)
    cuda = device.type == "cuda"
    return torch.optim.AdamW([{"params": ps} for ps in groups.values()], lr=0.0, betas=RULES.adam_betas,
                             eps=RULES.adam_eps, weight_decay=RULES.weight_decay,
                             fused=cuda or None, foreach=None if cuda else False)


class Trainer:
    def __init__(self, cfg: GPTRunConfig, arch: GPTConfig, stages, optimizer, mesh, device: torch.device,
                 train: TrainSamples, valid, eval_count: int):
        self.cfg, self.arch, self.optimizer, self.device, self.mesh = cfg, arch, optimizer, device, mesh
        self.modules = [m for _, m in stages]
        self.dp_rank, self.tp = mesh["dp"].get_local_rank(), mesh["tp"].size()
        self.gbs = cfg.minibs * mesh["dp"].size()
        self.train, self.valid, self.eval_count = train, valid, eval_count
        self.base_lr = RULES.base_lr(self.gbs)
        self.init_step = RULES.init_checkpoint_step(self.gbs)
        self.step = 0  # steps of this run
        self.samples = 0
        self.loss = LMLoss()
        last_stage = cfg.pipeline_parallel * cfg.interleaved_pipeline - 1
        self.first = stages[0][0] == 0
        self.last = stages[-1][0] == last_stage
        self.schedule = None
        if cfg.pipeline_parallel > 1:
            self.schedule = build_schedule(stages, mesh["pp"], device, cfg.accumulation_steps(), self.loss)
        self.tied = embedding_group(mesh)

    def autocast(self):
        stack = contextlib.ExitStack()
        if self.cfg.precision in ("bf16", "fp8"):
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if self.cfg.precision == "fp8":
            from gpt3.te import fp8_autocast

            stack.enter_context(fp8_autocast())
        return stack

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

    def forward_backward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Gradients of this rank's MINIBS sequences; returns their mean loss (0 on stages without the head)."""
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if self.schedule is not None:  # the schedule splits the batch into MINIBS / MICRO_BATCH_SIZE micro-batches
            micro = []
            with self.autocast():
                self.schedule.step(*([inputs] if self.first else []),
                                   **({"target": targets, "losses": micro} if self.last else {}))
            return torch.stack(micro).mean().detach() if self.last else torch.zeros((), device=self.device)
        accum = self.cfg.accumulation_steps()
        total = torch.zeros((), device=self.device)
        model = self.modules[0]
        for m, (x, y) in enumerate(zip(inputs.chunk(accum), targets.chunk(accum))):
            set_gradient_sync(self.modules, m == accum - 1)  # FSDP2 reduce-scatters once per step
            with self.autocast():
                loss = self.loss(model(x), y) / accum
            loss.backward()
            total += loss.detach()
        return total

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the global batch: this rank's MINIBS sequences in micro-batches."""
        lr = cosine_warmup_lr(self.init_step + self.step + 1, base_lr=self.base_lr,
                              min_lr=self.base_lr * RULES.end_lr_fraction,
                              warmup_steps=RULES.warmup_steps(self.gbs), total_steps=RULES.schedule_steps(self.gbs))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        first = self.step * self.gbs + self.dp_rank * self.cfg.minibs  # TP and PP ranks share their batch
        tokens = self.train.batch(range(first, first + self.cfg.minibs)).long().to(self.device)
        loss = self.forward_backward(tokens)
        sync_tied_embedding_grads(self.modules, self.tied)
        clip_stage_grads(self.modules, RULES.grad_clip, self.mesh["pp"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return loss

    def train_block(self, block: Block) -> int:
        for m in self.modules:
            m.train()
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
        for m in self.modules:
            m.eval()
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # nats, tokens (on ranks with the head)
        self.loss.reduction = "sum"
        try:
            for inputs, targets in self.valid:
                inputs, targets = inputs.to(self.device), targets.to(self.device)
                if self.schedule is not None:
                    micro = []
                    with self.autocast():
                        self.schedule.eval(*([inputs] if self.first else []),
                                           **({"target": targets, "losses": micro} if self.last else {}))
                    nats = torch.stack(micro).sum() if self.last else 0.0
                else:
                    with self.autocast():
                        nats = self.loss(self.modules[0](inputs), targets)
                if self.last:
                    sums[0] += nats
                    sums[1] += (targets != IGNORE).sum()
        finally:
            self.loss.reduction = "mean"
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
        mesh = build_mesh(device, denv.world_size, cfg.tensor_parallel, cfg.pipeline_parallel)
        arch = GPTConfig.cpu() if cfg.model_size == "cpu" else GPTConfig()
        stages = build_model(arch, cfg, mesh, device)
        checkpoint = find_checkpoint(args)
        optimizer = build_optimizer([m for _, m in stages], device)
        for _, stage in stages:  # each rank reads its own shard of the weights and the Adam moments
            load_checkpoint(stage, optimizer, checkpoint)
        logger.event("init_checkpoint", str(checkpoint))
        root = args.data_dir / "preproc_data"
        gbs = cfg.global_batch(denv.world_size)
        train = TrainSamples([data.IndexedDataset(root / name) for name in TRAIN_FILES], cfg.max_samples + gbs,
                             arch.seq_len, seed)
        eval_batch = cfg.minibs if cfg.pipeline_parallel > 1 else cfg.micro_batch_size
        valid, eval_count = validation_batches(data.IndexedDataset(root / VALID_FILE), arch.seq_len,
                                               mesh["dp"].get_local_rank(), mesh["dp"].size(), eval_batch)
        trainer = Trainer(cfg, arch, stages, optimizer, mesh, device, train, valid, eval_count)
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
