"""RNN-T on LibriSpeech to a dev-clean WER of 0.058 (MLPerf Training v3.0 `rnnt`, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 10 logged experiments):
    source config_DGXH100_1x8x192x1.sh && DATADIR=/data/librispeech LOGDIR=$PWD/results NEXP=10 \\
        ../common/run_local.sh

DATADIR holds the {train-clean-100,train-clean-360,train-other-500,dev-clean}-wav folders, their
librispeech-<split>-wav.json manifests and sentencepieces/librispeech1023.model. Training utterances longer
than 16.7 s are dropped; an epoch is every remaining utterance once but N mod the global batch of them,
dropped at random. LAMB (betas BETA1/BETA2, eps 1e-9, weight decay 1e-3 on every parameter, global-norm
clipping 1) at LR: linear warmup per step over WARMUP epochs, HOLD_EPOCHS at LR, then x LR_DECAY_POWER per
epoch, floored at 1e-5. After every epoch the EMA of the weights (EMA per step) decodes dev-clean greedily;
stop at WER <= 0.058."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Subset

from common import dist, lamb, loader, schedule
from common.config import ConfigError, RuntimeConfig, parse_run_arguments, run_arguments
from common.mlperf_log import constants
from common.parallelize import parallelize_ddp
from common.session import RunPlan, Session
from common.step import TrainStep
from rnnt import data
from rnnt.config import RULES, RNNTConfig, epoch_batches
from rnnt.evaluate import EMA, word_error_rate
from rnnt.features import Features
from rnnt.model import RNNTShape, build_rnnt, rnnt_loss

BENCH_DIR = Path(__file__).resolve().parent
RUN_CONFIG = RNNTConfig
# TORCH_COMPILE=1: the (B, T, U) joint; the LSTMs are cuDNN/oneDNN kernels that dynamo leaves eager
COMPILE_BLOCKS = ("joint_net",)


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, RNNTConfig, "LibriSpeech in the MLPerf layout (WAVs, manifests, tokenizer)")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def learning_rate(cfg: RNNTConfig, steps_per_epoch: int):
    """The reference's schedule (rnnt/pytorch/common/optimizers.py) for optimizer step i (0-based here, 1-based
    there): (s + 1) / (W S + 1) x LR while s < W S, LR until (W + H) S, then LR x decay^(epoch - W - H)."""
    warmup, hold = cfg.warmup_epochs * steps_per_epoch, (cfg.warmup_epochs + cfg.hold_epochs) * steps_per_epoch

    def lr(i: int) -> float:
        step = i + 1
        if step < warmup:
            value = cfg.lr * (step + 1) / (warmup + 1)
        elif step < hold:
            value = cfg.lr
        else:
            epoch = (step - 1) // steps_per_epoch + 1
            value = cfg.lr * cfg.decay ** (epoch - cfg.warmup_epochs - cfg.hold_epochs)
        return max(value, RULES.min_lr)

    return lr


def hyperparameters(cfg: RNNTConfig, global_batch: int) -> dict:
    return {
        constants.GLOBAL_BATCH_SIZE: global_batch,
        constants.GRADIENT_ACCUMULATION_STEPS: cfg.accumulation,
        constants.OPT_NAME: "lamb",
        constants.OPT_BASE_LR: cfg.lr,
        "opt_lamb_epsilon": RULES.lamb_epsilon,
        "opt_lamb_learning_rate_decay_poly_power": cfg.decay,
        constants.OPT_LR_WARMUP_EPOCHS: cfg.warmup_epochs,
        "opt_lamb_learning_rate_hold_epochs": cfg.hold_epochs,
        "opt_lamb_beta_1": cfg.beta1,
        "opt_lamb_beta_2": cfg.beta2,
        "opt_gradient_clip_norm": RULES.gradient_clip_norm,
        "opt_learning_rate_alt_decay_func": True,
        "opt_learning_rate_alt_warmup_func": True,
        "opt_lamb_learning_rate_min": RULES.min_lr,
        constants.OPT_WEIGHT_DECAY: RULES.weight_decay,
        "data_train_max_duration": RULES.max_duration,
        "data_train_num_buckets": cfg.num_buckets,
        "data_speed_perturbaton_min": RULES.speed_min,  # the rules' spelling
        "data_speed_perturbaton_max": RULES.speed_max,
        "data_spec_augment_freq_n": RULES.freq_masks,
        "data_spec_augment_freq_min": 0,
        "data_spec_augment_freq_max": RULES.freq_mask_max,
        "data_spec_augment_time_n": RULES.time_masks,
        "data_spec_augment_time_min": 0,
        "data_spec_augment_time_max": RULES.time_mask_max,
        "model_eval_ema_factor": cfg.ema,
        "eval_max_prediction_symbols": RULES.max_symbols,
        "model_weights_initialization_scale": cfg.init_scale,
    }


def steps_per_epoch(cfg: RNNTConfig, world_size: int, train_utterances: int) -> int:
    """Optimizer steps of one epoch: its micro-batches (`epoch_batches`) in groups of GRAD_ACCUMULATION_STEPS."""
    return epoch_batches(train_utterances, cfg.batch_size, world_size) // cfg.accumulation


def reached(wer: float) -> bool:
    return 0 < wer <= RULES.target_wer


def run_plan(cfg: RNNTConfig, runtime: RuntimeConfig, world_size: int,
             train_utterances: int = RULES.train_utterances, eval_utterances: int = RULES.eval_samples) -> RunPlan:
    """What a run logs and where it evaluates (after every epoch, rules). `train_samples` is an epoch's
    utterances, N mod (BATCHSIZE x processes) dropped, as NVIDIA's v3.0 logs count it."""
    epoch_steps = steps_per_epoch(cfg, world_size, train_utterances)
    if epoch_steps == 0:
        raise ConfigError(f"BATCHSIZE: {cfg.batch_size} x {world_size} processes x {cfg.accumulation} accumulation "
                          f"steps is more than the {train_utterances} training utterances: no full step")
    global_batch = cfg.batch_size * world_size * cfg.accumulation
    return RunPlan(
        hyperparameters=hyperparameters(cfg, global_batch),
        schedule=schedule.every_n_epochs(cfg.num_epochs, epoch_steps),
        eval_samples=eval_utterances,
        train_samples=epoch_batches(train_utterances, cfg.batch_size, world_size) * cfg.batch_size * world_size,
        samples_per_step=global_batch, reached=reached, target=RULES.target_wer, untrained=1.0)


def build_step(model: nn.Module, raw: nn.Module, features: Features, cfg: RNNTConfig, s: Session, ema: EMA,
               steps_per_epoch: int) -> TrainStep:
    groups = [{"params": [p for p in raw.parameters() if p.requires_grad], "weight_decay": RULES.weight_decay}]
    optimizer = lamb.build_lamb(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=RULES.lamb_epsilon,
                                weight_decay=RULES.weight_decay, max_grad_norm=RULES.gradient_clip_norm,
                                fused=False, device=s.device, variable="FUSED_LAMB")
    generator = torch.Generator().manual_seed(s.seed * 1000 + s.rank)  # SpecAugment draws, per rank

    def loss(batch):
        audio, lengths, labels, label_lengths = batch
        x, frames = features(audio, lengths, generator)
        logits, f_lengths = model(x, frames, labels)
        return rnnt_loss(logits, f_lengths, labels, label_lengths, blank=raw.shape.blank,
                         implementation=cfg.transducer_loss)

    return TrainStep(model, optimizer, loss, precision=s.precision, device=s.device, count=lambda b: len(b[0]),
                     lr=learning_rate(cfg, steps_per_epoch), accumulation=cfg.accumulation, after_update=ema.update)


def to_device(batch, device: torch.device):
    """(audio, lengths, labels, label lengths) on the device."""
    return tuple(t.to(device, non_blocking=True) for t in batch)


def main(argv=None) -> int:
    args = parse_args(argv)
    with Session(RULES.benchmark, args, RNNTConfig) as s:
        cfg = s.cfg
        s.require(not s.precision.fp8, "PRECISION", "rnnt has no FP8 path; use bf16")
        tokenizer = data.Tokenizer(data.tokenizer_path(args.data_dir))
        train = data.read_training(args.data_dir, tokenizer)
        val = data.read_manifest(args.data_dir, data.EVAL_SPLIT, tokenizer)
        full = s.runtime.model_size == "full"
        s.require(not full or len(tokenizer) == RNNTShape().num_labels, "MODEL_SIZE",
                  f"the full model needs the 1023-piece tokenizer; {tokenizer.path} has {len(tokenizer)}")
        plan = run_plan(cfg, s.runtime, s.world_size, len(train), len(val))
        torch.manual_seed(s.seed)  # DDP starts every rank from rank 0's weights
        raw = build_rnnt(RNNTShape() if full else RNNTShape.debug(len(tokenizer)), cfg.init_scale)
        model = parallelize_ddp(raw, device=s.device, world_size=s.world_size, precision=s.precision,
                                compile_blocks=COMPILE_BLOCKS if s.runtime.torch_compile else None)
        if s.world_size > 1:  # dropout and dither: each rank its own draws (the reference seeds seed + local rank)
            torch.manual_seed(s.seed + s.rank)
        ema = EMA(raw, cfg.ema)
        features = Features().to(s.device)
        sampler = data.EpochBatches([u.duration for u in train], cfg.batch_size, s.world_size, s.rank, s.seed,
                                    cfg.num_buckets)
        common = dict(num_workers=s.runtime.num_workers, collate_fn=data.collate, pin_memory=s.device.type == "cuda",
                      persistent_workers=s.runtime.num_workers > 0)
        train_loader = DataLoader(data.TrainUtterances(train, s.seed), batch_sampler=sampler, **common)
        shard = Subset(data.EvalUtterances(val), data.eval_shard(val, s.rank, s.world_size))
        # read at the first evaluation, replayed from memory at the others (same batches; dither is drawn later),
        # so its worker ends with that first pass instead of idling for the rest of the run
        eval_batches = loader.Replay(DataLoader(shard, batch_size=cfg.eval_batch_size, shuffle=False,
                                                **{**common, "persistent_workers": False}))
        epoch_steps = steps_per_epoch(cfg, s.world_size, len(train))
        if (len(sampler) // cfg.accumulation, sampler.samples_per_epoch) != (epoch_steps, plan.train_samples):
            raise RuntimeError(f"the sampler has {len(sampler)} batches ({sampler.samples_per_epoch} utterances) per "
                               f"epoch, the plan {epoch_steps} steps ({plan.train_samples} utterances)")
        transfer = lambda batch: to_device(batch, s.device)  # noqa: E731
        s.train_to_target(plan, build_step(model, raw, features, cfg, s, ema, epoch_steps),
                          loader.on_device(loader.epochs(train_loader), transfer),
                          lambda: word_error_rate(ema.model, features, loader.on_device(eval_batches, transfer),
                                                  tokenizer, s.device))
    return s.exit_code


if __name__ == "__main__":
    dist.exit_after(main)
