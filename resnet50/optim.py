"""LARS and the MLPerf ResNet learning-rate schedule.

LARS as in the MLPerf reference: for each weight tensor w with gradient g,
    trust = eta * |w| / (|g| + wd * |w| + eps)   (1 when |w| or |g| is 0)
    v     = momentum * v + lr * trust * (g + wd * w)
    w     = w - v
BatchNorm parameters and biases skip both weight decay and the trust ratio
(rules: "no weight decay or LARS scaling on BatchNorm and bias"); they get
plain momentum SGD.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, weight_decay: float,
                 eta: float = 0.001, epsilon: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
                        epsilon=epsilon, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            lr, wd = group["lr"], group["weight_decay"]
            if group["lars"]:
                w_norms = torch._foreach_norm(params)
                g_norms = torch._foreach_norm(grads)
                updates = torch._foreach_add(grads, params, alpha=wd)
                for update, w_norm, g_norm in zip(updates, w_norms, g_norms):
                    trust = group["eta"] * w_norm / (g_norm + wd * w_norm + group["epsilon"])
                    trust = torch.where((w_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    update.mul_(trust * lr)
            else:
                updates = torch._foreach_mul(grads, lr)
            for p, update in zip(params, updates):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.sub_(state["momentum_buffer"])
        return loss


def lars_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights of convolutions and linear layers get LARS; BN parameters and biases do not."""
    lars, plain = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            excluded = isinstance(module, nn.modules.batchnorm._NormBase) or name == "bias"
            (plain if excluded else lars).append(param)
    return [dict(params=lars, weight_decay=weight_decay, lars=True),
            dict(params=plain, weight_decay=0.0, lars=False)]


def poly_warmup_lr(step: int, *, base_lr: float, end_lr: float, warmup_steps: int,
                   total_steps: int, power: int = 2) -> float:
    """Linear warmup to base_lr, then (base-end) * (1 - progress)^power + end."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    progress = min(step - warmup_steps, decay_steps) / decay_steps
    return (base_lr - end_lr) * (1.0 - progress) ** power + end_lr
