"""RNN-T (MLPerf `rnnt`) run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target, the audio front end, SpecAugment and speed
perturbation ranges, LAMB's epsilon, weight decay, clipping and LR floor, the
symbol cap) are in `RULES`; DEVICE, MODEL_SIZE (full: the 49.0M-parameter
network; debug: the same code at CPU width), PRECISION, TORCH_COMPILE and
DATALOADER_WORKERS are `common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import env_field


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules, `closed_rnnt.yaml` and the reference (rnnt/pytorch)."""

    benchmark: str = "rnnt"
    target_wer: float = 0.058  # word error rate on dev-clean, at most (and above 0)
    eval_samples: int = 2703  # dev-clean utterances
    max_duration: float = 16.7  # seconds; longer training utterances (before speed perturbation) are dropped
    # Training utterances of at most 16.7 s in train-clean-100/360 and train-other-500: at least this many. Every
    # v3.0 rnnt result log (mlcommons/training_results_v3.0, all submitters) logs train_samples = floor(N / global
    # batch) x global batch: 278,528 at global batch 512, 1024, 2048 and 4096, 278,016 at 768 and 1536, so
    # 278,528 <= N < 278,784; the exact N needs the prepared manifests. Any N there gives the same epoch at every
    # global batch without a multiple in 278,529..278,783 (all of NVIDIA's, and every power of two up to 16384).
    train_utterances: int = 278_528
    sample_rate: int = 16000
    n_fft: int = 512
    window: int = 320  # 20 ms Hann window
    hop: int = 160  # 10 ms
    mels: int = 80
    preemphasis: float = 0.97
    dither: float = 1e-5
    frame_stack: int = 3  # 3 frames stacked, every third kept: 240 features every 30 ms
    speed_min: float = 0.85
    speed_max: float = 1.15
    freq_masks: int = 2
    freq_mask_max: int = 20  # mel bins
    time_masks: int = 10
    time_mask_max: float = 0.03  # of the utterance's frames
    max_symbols: int = 300  # per utterance in greedy decoding
    lamb_epsilon: float = 1e-9
    weight_decay: float = 1e-3
    gradient_clip_norm: float = 1.0
    min_lr: float = 1e-5


RULES = Rules()


def epoch_batches(train_utterances: int, batch_size: int, world_size: int) -> int:
    """Micro-batches of one epoch: every utterance once but N mod (BATCHSIZE x processes) of them, dropped at
    random (the reference's bucketing sampler; `rnnt.data.EpochBatches`)."""
    return train_utterances // (batch_size * world_size)


@dataclass(frozen=True, kw_only=True)
class RNNTConfig:
    """Hyperparameters of one run (NVIDIA's hyperparameters_<global batch>.sh, the RCP's)."""

    batch_size: int = env_field("BATCHSIZE", "per-process (per-GPU) micro-batch, in utterances: the global batch "
                                "is BATCHSIZE x processes x GRAD_ACCUMULATION_STEPS (NVIDIA's BATCHSIZE is the "
                                "per-GPU batch before its division by the accumulation steps)")
    eval_batch_size: int = env_field("EVAL_BATCHSIZE", "per-process evaluation batch")
    lr: float = env_field("LR", "LAMB learning rate after warmup")
    num_epochs: int = env_field("EPOCH", "give up after this many epochs (an evaluation follows each)")
    warmup_epochs: int = env_field("WARMUP", "epochs of linear warmup (per step)")
    hold_epochs: int = env_field("HOLD_EPOCHS", "epochs at LR after the warmup, before the decay")
    decay: float = env_field("LR_DECAY_POWER", "LR x this^(epoch - WARMUP - HOLD_EPOCHS) after the hold (an "
                             "exponential decay per epoch, logged as opt_lamb_learning_rate_decay_poly_power)")
    beta1: float = env_field("BETA1", "LAMB beta 1", 0.9)
    beta2: float = env_field("BETA2", "LAMB beta 2", 0.999)
    ema: float = env_field("EMA", "evaluation weights: ema = EMA x ema + (1 - EMA) x weights after every step")
    init_scale: float = env_field("WEIGHTS_INIT_SCALE", "LSTM weights and biases scaled by this at init", 0.5)
    num_buckets: int = env_field("BUCKET", "duration buckets of the training sampler (1: a plain shuffle)", 1)
    accumulation: int = env_field("GRAD_ACCUMULATION_STEPS", "micro-batches per optimizer step", 1)
    transducer_loss: Literal["torchaudio", "apex"] = env_field(
        "TRANSDUCER_LOSS", "the loss kernel: torchaudio's, or apex.contrib.transducer's (NVIDIA's, GPU)", "torchaudio")

    def __post_init__(self):
        for name, value in (("BATCHSIZE", self.batch_size), ("EVAL_BATCHSIZE", self.eval_batch_size),
                            ("EPOCH", self.num_epochs), ("BUCKET", self.num_buckets),
                            ("GRAD_ACCUMULATION_STEPS", self.accumulation)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.hold_epochs < 0 or not 0 < self.decay <= 1:
            raise ValueError(f"LR={self.lr}, WARMUP={self.warmup_epochs}, HOLD_EPOCHS={self.hold_epochs}, "
                             f"LR_DECAY_POWER={self.decay}: expected LR > 0, epochs >= 0, 0 < decay <= 1")
        if not 0 <= self.ema < 1:
            raise ValueError(f"EMA={self.ema} must be in [0, 1)")
