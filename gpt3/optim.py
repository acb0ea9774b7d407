"""Gradient clipping over plain and tensor-parallel (DTensor) parameters."""
from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most max_norm; returns the norm before clipping.

    A sharded DTensor gradient's norm is reduced across its mesh (`full_tensor`
    of the per-parameter norm), so every rank clips by the same, true norm;
    replicated and plain gradients count once.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = []
    for g in grads:
        n = torch.linalg.vector_norm(g, dtype=torch.float32)
        norms.append(n.full_tensor() if isinstance(n, DTensor) else n)
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale)
    return total
