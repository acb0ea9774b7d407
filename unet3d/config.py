"""3D U-Net (MLPerf `unet3d`) run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target, the 168/42 case split, patch oversampling, the
validation overlap, the preprocessing constants) are in `RULES`; DEVICE,
MODEL_SIZE (full: filters 32-320; debug: the same code with filters 8-32),
PRECISION, TORCH_COMPILE and DATALOADER_WORKERS are
`common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from common.config import env_field

# The 42 KiTS19 validation cases of the MLPerf split (mlcommons/training, image_segmentation/pytorch/
# evaluation_cases.txt; NVIDIA's v3.0 copy is the same); cases 0-209 otherwise train.
VALIDATION_CASES = (
    0, 3, 5, 6, 12, 24, 34, 41, 44, 49, 52, 56, 61, 65, 66, 70, 76, 78, 80, 84, 86, 87, 92, 111, 112, 125, 128,
    138, 157, 160, 161, 162, 169, 171, 176, 185, 187, 189, 198, 203, 206, 207,
)


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules, `closed_unet3d.yaml` and the reference (image_segmentation)."""

    benchmark: str = "unet3d"
    target_dice: float = 0.908  # mean of the kidney and tumor Dice scores over the 42 validation cases
    diverged_dice: float = 1e-6  # the reference gives up (aborted) when an evaluation scores below this
    num_cases: int = 210  # KiTS19 cases 0-209
    # The real dataset's split (FACTS.md §6; the reference's evaluation_cases.txt): 168 training and 42 validation
    # cases, what closed_unet3d.yaml checks train_samples and eval_samples against.
    train_samples: int = 168
    eval_samples: int = len(VALIDATION_CASES)
    in_channels: int = 1
    num_classes: int = 3  # background, kidney, tumor
    oversampling: float = 0.4  # probability that a training patch is centred on a kidney or tumor object
    validation_overlap: float = 0.5  # sliding-window overlap between neighbouring windows
    padding_value: float = -2.2  # what the sliding window pads volumes with (about the clipped minimum)
    # Preprocessing of the raw KiTS19 volumes (the reference's preprocess_dataset.py).
    target_spacing: tuple = (1.6, 1.2, 1.2)
    clip: tuple = (-79.0, 304.0)
    mean: float = 101.0
    std: float = 76.9
    min_shape: int = 128  # every spatial dimension padded (edge values) to at least this
    # Evaluation cadence, in epochs of 168 samples, scaled to the real epoch (FACTS.md §3).
    start_eval_samples_epochs: int = 1000
    eval_every_samples_epochs: int = 20
    max_samples_epochs: int = 10000


RULES = Rules()


def scaled_epochs(epochs_of_168: int, samples_per_epoch: int) -> int:
    """rules: cadences are given in epochs of 168 samples; an epoch of `samples_per_epoch` scales them up
    (ceil(E x 168 / samples per epoch), the reference's main.py)."""
    return math.ceil(epochs_of_168 * RULES.train_samples / samples_per_epoch)


def steps_per_epoch(train_cases: int, global_batch: int) -> int:
    """Steps of one epoch: one patch of every training case, the last incomplete global batch dropped (the
    reference's drop_last; a DistributedSampler's and the DataLoader's drop_last give the same count)."""
    return train_cases // global_batch


@dataclass(frozen=True, kw_only=True)
class UNet3DConfig:
    """Hyperparameters of one run."""

    batch_size: int = env_field("BATCH_SIZE", "per-process (per-GPU) training batch, in patches")
    val_batch_size: int = env_field("VAL_BATCH_SIZE", "sliding windows per forward pass in evaluation", 1)
    optimizer: Literal["nag", "sgd"] = env_field(
        "OPTIMIZER", "nag: SGD with Nesterov momentum (NVIDIA's name; the reference's `sgd` is Nesterov too); "
        "sgd: SGD with plain momentum", "nag")
    lr: float = env_field("LR", "learning rate after warmup, for the gradient of the batch-mean loss (the "
                          "reference's and its RCPs' convention)")
    init_lr: float = env_field("INIT_LEARNING_RATE", "learning rate the linear warmup starts from", 1e-4)
    warmup_epochs: int = env_field("LR_WARMUP_EPOCHS", "epochs of linear warmup from INIT_LEARNING_RATE to LR")
    decay_epochs: str = env_field("LR_DECAY_EPOCHS", "epochs after which the LR is multiplied by LR_DECAY_FACTOR, "
                                  "space-separated (empty: none)", "")
    decay_factor: float = env_field("LR_DECAY_FACTOR", "LR multiplier at each LR_DECAY_EPOCHS boundary", 1.0)
    momentum: float = env_field("MOMENTUM", "SGD momentum", 0.9)
    weight_decay: float = env_field("WEIGHT_DECAY", "L2 weight decay", 0.0)
    max_epochs: int = env_field("MAX_EPOCHS", "give up after this many epochs")
    start_eval_at: int = env_field("START_EVAL_AT", "first evaluated epoch (0: the rules' 1000 epochs of 168 "
                                   "samples, scaled to the epoch)", 0)
    evaluate_every: int = env_field("EVALUATE_EVERY", "epochs between evaluations (0: the rules' 20 epochs of 168 "
                                    "samples, scaled)", 0)
    input_shape: int = env_field("INPUT_SHAPE", "side of the cubic training patch and evaluation window; the "
                                 "rules' 128", 128)

    def __post_init__(self):
        for name, value in (("BATCH_SIZE", self.batch_size), ("VAL_BATCH_SIZE", self.val_batch_size),
                            ("MAX_EPOCHS", self.max_epochs)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        if self.input_shape <= 0:
            raise ValueError(f"INPUT_SHAPE={self.input_shape} must be positive")
        if self.lr <= 0 or self.warmup_epochs < 0 or self.start_eval_at < 0 or self.evaluate_every < 0:
            raise ValueError(f"LR={self.lr}, LR_WARMUP_EPOCHS={self.warmup_epochs}, START_EVAL_AT="
                             f"{self.start_eval_at}, EVALUATE_EVERY={self.evaluate_every}: expected LR > 0, rest >= 0")
        self.decay_boundaries  # parses, or raises naming the variable

    @property
    def decay_boundaries(self) -> list[int]:
        try:
            epochs = [int(e) for e in self.decay_epochs.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"LR_DECAY_EPOCHS={self.decay_epochs!r} is not a list of epochs") from None
        if any(b <= a for a, b in zip(epochs, epochs[1:])) or any(e <= 0 for e in epochs):
            raise ValueError(f"LR_DECAY_EPOCHS={self.decay_epochs!r} must rise from 1 or more")
        return epochs

    def eval_cadence(self, samples_per_epoch: int) -> tuple[int, int]:
        """(first evaluated epoch, epochs between evaluations): the config's, or the rules' scaled ones."""
        return (self.start_eval_at or scaled_epochs(RULES.start_eval_samples_epochs, samples_per_epoch),
                self.evaluate_every or scaled_epochs(RULES.eval_every_samples_epochs, samples_per_epoch))
