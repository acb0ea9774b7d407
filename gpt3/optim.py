"""Adam as the rules configure it, gradient clipping over plain and tensor-parallel (DTensor) parameters, and the
LR schedule."""
from __future__ import annotations

import math

import torch
import torch.distributed as torch_dist
from torch.distributed.tensor import DTensor

from common.step import optimizer_kernels
from gpt3.config import RULES
from gpt3.parallelize import tied_copies


def build_optimizer(modules, device: torch.device) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95, 1e-8, weight decay 0.1 on every parameter: NVIDIA's `do_layer_norm_weight_decay: True`).

    One parameter group per device mesh, so the multi-tensor kernels (fused on
    a GPU) never mix DTensors of different meshes.
    """
    groups: dict = {}
    for module in modules:
        for p in module.parameters():
            groups.setdefault(p.device_mesh if isinstance(p, DTensor) else None, []).append(p)
    return torch.optim.AdamW([{"params": ps} for ps in groups.values()], lr=0.0, betas=RULES.adam_betas,
                             eps=RULES.adam_eps, weight_decay=RULES.weight_decay, **optimizer_kernels(device))


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm: float, pp_group=None, also_scale=()) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most max_norm; returns the norm before clipping.

    A sharded DTensor gradient's norm is reduced across its mesh (`full_tensor`
    of the per-parameter norm), so every rank clips by the same, true norm;
    replicated and plain gradients count once. With pipeline stages, the
    squared norms of all stages are summed over `pp_group`; `also_scale` are
    gradients clipped alongside but not counted (the last stage's copy of the
    tied embedding, counted in the first stage).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    squares = torch.zeros((), dtype=torch.float32)
    for g in grads:
        n = torch.linalg.vector_norm(g, dtype=torch.float32)
        n = n.full_tensor() if isinstance(n, DTensor) else n
        squares = squares.to(n.device) + n * n
    if pp_group is not None:
        torch_dist.all_reduce(squares, group=pp_group)
    total = squares.sqrt()
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads + [p.grad for p in also_scale if p.grad is not None]:
        g.mul_(scale)
    return total


def clip_stage_grads(stages, max_norm: float, pp_mesh) -> torch.Tensor:
    """Clip the gradients of this rank's model (or pipeline stages) by the norm over the whole model.

    The last stage's copy of the tied word embedding is clipped but counted once (in the first stage).
    """
    params = [p for m in stages for p in m.parameters()]
    copies = tied_copies(stages)
    pp_group = pp_mesh.get_group() if pp_mesh.size() > 1 else None
    return clip_grad_norm_([p for p in params if id(p) not in copies], max_norm, pp_group=pp_group,
                           also_scale=[p for p in params if id(p) in copies])


def cosine_warmup_lr(step: float, *, base_lr: float, min_lr: float, warmup_steps: float, total_steps: float) -> float:
    """NeMo/Megatron's linear warmup then cosine annealing, at optimizer step `step`.

    base_lr * step / warmup during warmup; then min_lr + (base_lr - min_lr) *
    0.5 * (1 + cos(pi * (step - warmup) / (total - warmup))); min_lr after total.
    """
    if step <= warmup_steps:
        return base_lr * step / warmup_steps
    if step >= total_steps:
        return min_lr
    ratio = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (math.cos(math.pi * ratio) + 1.0)


def lr_schedule(global_batch: int):
    """lr(step of this run, 0 first): the rules' warmup + cosine at this global batch, continuing from the
    checkpoint's position (`init_checkpoint_step`)."""
    base, init = RULES.base_lr(global_batch), RULES.init_checkpoint_step(global_batch)
    return lambda step: cosine_warmup_lr(init + step + 1, base_lr=base, min_lr=base * RULES.end_lr_fraction,
                                         warmup_steps=RULES.warmup_steps(global_batch),
                                         total_steps=RULES.schedule_steps(global_batch))
