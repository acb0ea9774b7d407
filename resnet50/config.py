"""ResNet-50 v1.5 run configuration: NVIDIA's variable names mapped onto typed fields.

Rule-fixed values (target, eval period, schedule shape, LARS epsilon) are in
`RULES`, not in config files; DEVICE, PRECISION, TORCH_COMPILE and
DATALOADER_WORKERS are `common.config.RuntimeConfig`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from common.config import env_field


@dataclass(frozen=True)
class Rules:
    """Fixed by the MLPerf Training v3.0 rules and `closed_resnet_lars.yaml`."""

    benchmark: str = "resnet"
    target_top1: float = 0.759  # eval_accuracy >= 0.7590
    num_classes: int = 1000
    eval_period_epochs: int = 4  # rules: eval every 4 epochs, first-eval offset 0-3
    poly_power: int = 2
    end_lr: float = 1e-4
    lars_epsilon: float = 0.0
    label_smoothing_choices: tuple = (0.0, 0.1)
    train_images: int = 1_281_167  # ImageNet-1k train / val: what train_samples and eval_samples log
    eval_images: int = 50_000


RULES = Rules()


@dataclass(frozen=True)
class ResNetConfig:
    """Hyperparameters and fast-path switches for one run."""

    batch_size: int = env_field("BATCHSIZE", "per-process (per-GPU) training batch size")
    lr: float = env_field("LR", "LARS base learning rate at the peak of warmup")
    warmup_epochs: int = env_field("WARMUP_EPOCHS", "epochs of linear learning-rate warmup")
    num_epochs: int = env_field("NUMEPOCHS", "epochs the polynomial decay spans (and the training budget)")
    eval_offset: int = env_field("EVAL_OFFSET", "first evaluation after EVAL_OFFSET+1 epochs (0-3)")
    weight_decay: float = env_field("WD", "LARS weight decay, 1e-4 * 2^N (not applied to BN and bias)")
    momentum: float = env_field("MOM", "LARS momentum")
    lars_eta: float = env_field("LARSETA", "LARS trust coefficient", 0.001)
    label_smoothing: float = env_field("LABELSMOOTHING", "label smoothing (0 or 0.1)", 0.1)
    eval_batch_size: int = env_field("EVAL_BATCHSIZE", "per-process eval batch size (0: BATCHSIZE)", 0)
    image_size: int = env_field("IMAGE_SIZE", "training crop size; 224 for the real benchmark", 224)
    channels_last: bool = env_field("CHANNELS_LAST", "NHWC memory format (GPU fast path)", False)
    use_dali: bool = env_field("USE_DALI", "decode and augment on the GPU with NVIDIA DALI", False)
    bn_group: int = env_field("BN_GROUP", "processes whose batches one BatchNorm's statistics span "
                              "(model_bn_span = BATCHSIZE x BN_GROUP)", 1)

    def __post_init__(self):
        if not 0 <= self.eval_offset < RULES.eval_period_epochs:
            raise ValueError(f"EVAL_OFFSET={self.eval_offset} must be in 0..{RULES.eval_period_epochs - 1}")
        if self.label_smoothing not in RULES.label_smoothing_choices:
            raise ValueError(f"LABELSMOOTHING={self.label_smoothing} must be 0 or 0.1 (rules)")
        if self.bn_group < 1:
            raise ValueError(f"BN_GROUP={self.bn_group} must be >= 1")
        if self.warmup_epochs >= self.num_epochs:
            raise ValueError(f"WARMUP_EPOCHS={self.warmup_epochs} must be < NUMEPOCHS={self.num_epochs}")

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size


def steps_per_epoch(train_images: int, global_batch: int) -> int:
    """Steps of one epoch, rounded up as NVIDIA's v3.0 ResNet-50 counts them (401 at 8 x 400): the last step of
    an epoch is filled with images from the start of its shuffled order, so no image is skipped."""
    return math.ceil(train_images / global_batch)
