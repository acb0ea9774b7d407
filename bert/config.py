"""BERT phase-2 run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target, eval-set size, LAMB epsilon, decay power, gradient
clipping, the eval-cadence formula) are in `RULES`, not in config files;
DEVICE, MODEL_SIZE (full: BERT-large; debug: the tiny model), PRECISION,
TORCH_COMPILE and DATALOADER_WORKERS are `common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from common.config import env_field


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules and `closed_bert.yaml`."""

    benchmark: str = "bert"
    target_mlm_accuracy: float = 0.720  # eval_accuracy >= 0.720
    eval_samples: int = 10_000  # part_eval_10k.hdf5
    max_predictions_per_seq: int = 76
    max_seq_length: int = 512
    max_sequences_per_row: int = 3  # packed rows hold 1-3 sequences
    lamb_epsilon: float = 1e-6
    decay_power: float = 1.0  # polynomial (linear) decay to 0 after warmup
    max_grad_norm: float = 1.0  # global-norm clipping inside LAMB, as apex FusedLAMB

    @staticmethod
    def eval_interval_samples(global_batch: int) -> int:
        """The rules' evaluation cadence in samples (sequences): floor(0.05*(230.23*GBS+3e6)/25000)*25000."""
        return math.floor(0.05 * (230.23 * global_batch + 3_000_000) / 25_000) * 25_000


RULES = Rules()


@dataclass(frozen=True)
class BertRunConfig:
    """Hyperparameters and fast-path switches for one phase-2 run."""

    batch_size: int = env_field("BATCHSIZE", "per-process batch in rows (a packed row holds up to 3 sequences)")
    lr: float = env_field("LR", "LAMB base learning rate")
    max_samples: int = env_field("MAX_SAMPLES_TERMINATION", "give up after this many training sequences")
    max_steps: int = env_field("MAX_STEPS", "optimizer steps the polynomial decay spans (and the step budget)")
    beta1: float = env_field("OPT_LAMB_BETA_1", "LAMB beta1")
    beta2: float = env_field("OPT_LAMB_BETA_2", "LAMB beta2")
    weight_decay: float = env_field("WEIGHT_DECAY_RATE", "LAMB decoupled weight decay (not on LayerNorm and bias)")
    packing_factor: int = env_field(
        "PACKING_FACTOR", "average sequences per row: 2 reads packed_data/, 1 reads unpacked varlength/", 1)
    grad_accum: int = env_field("GRADIENT_STEPS", "gradient-accumulation steps per optimizer step", 1)
    warmup_steps: int = env_field("WARMUP_STEPS", "linear-warmup steps (0: WARMUP_PROPORTION * MAX_STEPS)", 0)
    warmup_proportion: float = env_field("WARMUP_PROPORTION", "warmup as a fraction of MAX_STEPS", 0.0)
    start_warmup_step: int = env_field(
        "START_WARMUP_STEP", "step the warmup ramp starts from (negative: start part-way up)", 0)
    eval_interval: int = env_field(
        "EVAL_ITER_SAMPLES", "training sequences between evaluations (0: the rules' interval for this GBS)", 0)
    eval_batch_size: int = env_field("EVAL_BATCHSIZE", "per-process eval batch (sequences)", 16)
    dropout: float = env_field("DROPOUT", "hidden and attention dropout", 0.1)
    fused_lamb: bool = env_field("FUSED_LAMB", "apex FusedLAMB (GPU); our LAMB is the same update rule", False)

    def __post_init__(self):
        if self.packing_factor not in (1, 2, 3):
            raise ValueError(f"PACKING_FACTOR={self.packing_factor} must be 1, 2 or 3")
        for name, value in (("BATCHSIZE", self.batch_size), ("GRADIENT_STEPS", self.grad_accum),
                            ("MAX_STEPS", self.max_steps), ("MAX_SAMPLES_TERMINATION", self.max_samples)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"OPT_LAMB_BETA_1={self.beta1}, OPT_LAMB_BETA_2={self.beta2} must be in [0, 1)")

    @property
    def schedule_warmup_steps(self) -> int:
        """NVIDIA's rule: WARMUP_STEPS when set, else WARMUP_PROPORTION of MAX_STEPS (then starting at 0)."""
        return self.warmup_steps or int(self.max_steps * self.warmup_proportion)

    @property
    def schedule_start_warmup_step(self) -> int:
        return self.start_warmup_step if self.warmup_steps else 0

    def global_batch(self, world_size: int) -> int:
        """Sequences per optimizer step, as NVIDIA logs it: rows x packing factor x accumulation x processes."""
        return self.batch_size * self.packing_factor * self.grad_accum * world_size

    def eval_every(self, world_size: int) -> int:
        """Training sequences between evaluations; never more than the rules allow."""
        rule = RULES.eval_interval_samples(self.global_batch(world_size))
        if self.eval_interval > rule:
            raise ValueError(f"EVAL_ITER_SAMPLES={self.eval_interval} evaluates less often than the rules' "
                             f"{rule} samples at global batch {self.global_batch(world_size)}")
        return self.eval_interval or rule
