"""BERT's LAMB (`common.lamb`, apex FusedLAMB's update) parameter groups, and NVIDIA's warmup + poly schedule.

The update is `common.lamb`'s (apex FusedLAMB's, shared with rnnt); BERT excludes
LayerNorm parameters and biases from weight decay, so those groups get a plain
Adam step.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from bert.config import RULES
from common import lamb


def lamb_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on everything but LayerNorm parameters and biases (NVIDIA's no_decay list)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "bias" in name or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_lamb(model: nn.Module, *, lr: float, betas: tuple[float, float], weight_decay: float,
               fused: bool, device: torch.device) -> torch.optim.Optimizer:
    """`common.lamb` over `lamb_param_groups`: apex FusedLAMB with FUSED_LAMB=1 on a GPU, else the PyTorch LAMB."""
    return lamb.build_lamb(lamb_param_groups(model, weight_decay), lr=lr, betas=betas, eps=RULES.lamb_epsilon,
                           weight_decay=weight_decay, max_grad_norm=RULES.max_grad_norm, fused=fused, device=device,
                           variable="FUSED_LAMB")


def warmup_poly_lr(step: int, *, base_lr: float, warmup_steps: int, start_warmup_step: int,
                   total_steps: int, power: float = RULES.decay_power) -> float:
    """NVIDIA's LinearWarmupPolyDecayScheduler for the optimizer step `step` (1-based).

    A linear ramp base_lr * (step - start) / warmup while step - start < warmup
    (a negative start begins part-way up the ramp), then
    base_lr * (1 - step / total)^power, floored at 0. When the warmup starts at
    step 0, steps count from 0 (NVIDIA's offset), so step 1 with no warmup runs
    at the full base LR.
    """
    offset = 1 if start_warmup_step == 0 else 0
    ramp_step = step - offset - start_warmup_step
    if ramp_step < warmup_steps:
        return base_lr * ramp_step / (warmup_steps + 1e-6)
    progress = min((step - offset) / total_steps, 1.0)
    return base_lr * (1.0 - progress) ** power
