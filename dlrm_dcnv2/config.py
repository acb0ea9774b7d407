"""DLRM-DCNv2 run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target AUC, validation size, table shapes, hotness, the
evaluation cadence, Adagrad's fixed settings) are in `RULES`, not in config files;
DEVICE, MODEL_SIZE (full: the benchmark's model; debug: small tables and widths),
PRECISION (bf16: autocast of the dense part), TORCH_COMPILE and DATALOADER_WORKERS
are `common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import env_field

# Criteo 1TB rows per table after the reference's preprocessing (ids capped at 40M).
TABLE_ROWS = (40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
              2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36)
# Ids per sample and table in the reference's materialised multi-hot dataset (214 in all).
HOTNESS = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules and `closed_dlrm_dcnv2.yaml`."""

    benchmark: str = "dlrm_dcnv2"
    target_auc: float = 0.80275  # eval_accuracy >= 0.80275, within one epoch
    # The real dataset's rows (FACTS.md §3; NVIDIA's v3.0 hugectr/train.py EVAL_NUM_SAMPLES, TRAIN_NUM_SAMPLES):
    eval_samples: int = 89_137_319  # first half of day 23 (the checker wants exactly this)
    train_samples: int = 4_195_197_692  # days 0-22
    train_days: tuple = tuple(range(23))
    eval_day: int = 23
    evals_per_epoch: int = 20  # rules: evaluate every 0.05 epoch (placed as NVIDIA's: train.run_plan)
    adagrad_epsilon: float = 1e-8
    adagrad_initial_accumulator: float = 0.0
    num_dense: int = 13


RULES = Rules()


@dataclass(frozen=True)
class DlrmRunConfig:
    """Hyperparameters and switches of one run."""

    global_batch: int = env_field("BATCHSIZE", "global training batch (all processes together), as NVIDIA's configs")
    eval_batch: int = env_field("BATCHSIZE_EVAL", "global evaluation batch (all processes together)")
    lr: float = env_field("LEARNING_RATE", "Adagrad learning rate of the embeddings and the dense part")
    data_format: Literal["numpy", "binary"] = env_field(
        "DATA_FORMAT", "numpy: reference day_*.npy/npz files; binary: NVIDIA's train_data.bin/val_data.bin", "numpy")

    def __post_init__(self):
        for name, value in (("BATCHSIZE", self.global_batch), ("BATCHSIZE_EVAL", self.eval_batch)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.lr <= 0:
            raise ValueError(f"LEARNING_RATE={self.lr} must be positive")

    def local_batch(self, world_size: int) -> int:
        """Rows each process trains on per step; the global batch must split evenly."""
        if self.global_batch % world_size:
            raise ValueError(f"BATCHSIZE={self.global_batch} does not split over {world_size} processes")
        return self.global_batch // world_size

    def local_eval_batch(self, world_size: int) -> int:
        return -(-self.eval_batch // world_size)
