"""LAMB as apex's FusedLAMB computes it (bert, rnnt), in plain PyTorch, and the fused kernel where asked for.

LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning"), with
apex's choices (`apex.optimizers.FusedLAMB` defaults: bias correction, grad
averaging, decoupled "AdamW" weight decay, `max_grad_norm=1.0`,
`use_nvlamb=False`), per step t:

    g     = grad / max(1, ||grad_all||_2 / max_grad_norm)   (one norm over all groups)
    m     = b1 m + (1 - b1) g ;   v = b2 v + (1 - b2) g^2
    u     = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * p
    ratio = ||p|| / ||u||  if wd != 0 and both norms are nonzero, else 1
    p     = p - lr * ratio * u

So groups without weight decay (BERT's LayerNorm and biases) get a plain Adam step.
"""
from __future__ import annotations

import torch


class LAMB(torch.optim.Optimizer):
    """The update rule in the module docstring, in plain PyTorch (float32 state)."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.01,
                 max_grad_norm: float = 1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        global_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            clip = torch.clamp(global_norm / group["max_grad_norm"], min=1.0)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                t = state["step"]
                g = p.grad.float() / clip
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                update = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + group["eps"])
                w = p.float()
                if group["weight_decay"] != 0:
                    update.add_(w, alpha=group["weight_decay"])
                    w_norm, u_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(update)
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(ratio)
                p.copy_(w - group["lr"] * update)
        return loss


def build_lamb(groups: list[dict], *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
               max_grad_norm: float, fused: bool, device: torch.device, variable: str) -> torch.optim.Optimizer:
    """apex FusedLAMB when `fused` on a GPU (imported only then; `variable` names the config switch in errors),
    otherwise `LAMB`; the same update either way."""
    if fused:
        if device.type != "cuda":
            raise RuntimeError(f"{variable}=1 needs a CUDA device (apex FusedLAMB is a GPU kernel)")
        try:
            from apex.optimizers import FusedLAMB
        except ImportError as e:
            raise RuntimeError(f"{variable}=1 needs NVIDIA apex (in the NGC PyTorch image)") from e
        return FusedLAMB(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=True,
                         grad_averaging=True, adam_w_mode=True, max_grad_norm=max_grad_norm, use_nvlamb=False)
    return LAMB(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
