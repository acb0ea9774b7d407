"""BatchNorm batch statistics over groups of BN_GROUP processes (NVIDIA's ResNet-50 `BN_GROUP`).

Why: NVIDIA's MLPerf v3.0 ResNet-50 configs with a small per-GPU batch (the 448-node one: 16 images a GPU) set
BN_GROUP=2, so each BatchNorm normalises with statistics over 2 GPUs' batches; the log's `model_bn_span` is then
BN_GROUP x per-GPU batch (32 there). BN_GROUP=1 (every other config) is plain per-GPU BatchNorm and everything here
is a no-op for it: no process groups are made and the model is returned unchanged.

Groups: the world splits into consecutive blocks of BN_GROUP ranks (0..k-1, k..2k-1, ...); on one node of 8 GPUs
with BN_GROUP=2 the pairs share NVLink. Every rank creates every group, in the same order (`new_group` is collective).

Math, per channel c, over the group's ranks r with n_r = N_r*H*W values x_r each (training mode):
    n = sum_r n_r,  mean = sum_r n_r mean_r / n,  var = sum_r (M2_r + n_r (mean_r - mean)^2) / n     (biased)
    y = (x - mean) / sqrt(var + eps) * weight + bias
    running_mean <- (1 - m) running_mean + m mean,  running_var <- (1 - m) running_var + m var * n / (n - 1)
with m = momentum, or 1 / num_batches_tracked when momentum is None (a cumulative average), as torch's BatchNorm.
mean_r and M2_r = sum (x_r - mean_r)^2 are each rank's own; combining them as above (Chan et al.) is what
sum / sum-of-squares / count give, without the cancellation of E[x^2] - E[x]^2. The per-rank (n_r, mean_r, M2_r)
are exchanged with one autograd-aware all-reduce (each rank fills its own row of a [BN_GROUP, 2C+1] zero tensor),
so the backward all-reduces the gradients of the shared statistics and carries the cross-rank terms: each rank's
input gradient is that of the sum of all the group's ranks' losses, as for one BatchNorm over the concatenated batch.
Weight/bias gradients stay each rank's own (its slice's share); DDP's gradient all-reduce sums them.

Devices: on CUDA, torch's SyncBatchNorm (`convert_sync_batchnorm` with the group) does this with fused kernels; it
rejects CPU tensors, so on the CPU (gloo) `GroupBatchNorm2d` below implements the same math. Evaluation mode uses the
running statistics and communicates nothing (with track_running_stats=False it uses the local batch, as
SyncBatchNorm does). Running statistics are the group's, so they differ between groups; DDP's default
broadcast_buffers=True overwrites them with rank 0's at each training forward.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_group_size(group_size: int, world_size: int) -> None:
    """ValueError unless BN_GROUP is a positive divisor of the world size."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"BN_GROUP={group_size!r} must be a positive integer")
    if world_size % group_size != 0:
        raise ValueError(f"BN_GROUP={group_size} does not divide the world size {world_size}: BatchNorm groups are "
                         f"consecutive blocks of BN_GROUP ranks")


def bn_process_groups(group_size: int) -> dist.ProcessGroup | None:
    """This rank's BatchNorm group of `group_size` consecutive ranks; None for group_size 1 (no groups are made).

    Collective: every rank must call it (it creates all world_size / group_size groups, in the same order). A group as
    large as the world is a new group over all ranks, not the default group."""
    rank, world = _world()
    check_group_size(group_size, world)
    if group_size == 1:
        return None
    mine = None
    for start in range(0, world, group_size):
        group = dist.new_group(ranks=list(range(start, start + group_size)))
        if start <= rank < start + group_size:
            mine = group
    return mine


class GroupBatchNorm2d(_BatchNorm):
    """BatchNorm2d whose training-mode statistics are over `process_group` (see the module docstring); for CPU/gloo.

    Same parameters, buffers and state_dict as nn.BatchNorm2d. process_group None means the whole world."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: dist.ProcessGroup | None = None,
                 device=None, dtype=None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training:
            # Eval: running statistics (or, without them, this rank's batch), no communication.
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        mean, var, count = self._group_stats(input)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                unbiased = var * (count / (count - 1))
                self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        stats_dtype = mean.dtype
        shape = (1, -1, 1, 1)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(stats_dtype)
        out = (input.to(stats_dtype) - mean.view(shape)) * scale.view(shape)
        if self.bias is not None:
            out = out + self.bias.to(stats_dtype).view(shape)
        return out.to(input.dtype)

    def _group_stats(self, input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, biased var, count) per channel over the group, differentiable across ranks."""
        from torch.distributed.nn.functional import all_reduce

        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        channels = x.shape[1]
        local_n = x.numel() // channels
        dims = (0, 2, 3)
        local_mean = x.sum(dims) / max(local_n, 1)
        local_m2 = (x - local_mean.view(1, -1, 1, 1)).square().sum(dims)
        local = torch.cat([local_mean, local_m2, local_mean.new_full((1,), float(local_n))])
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        size = dist.get_world_size(group)
        if size > 1:
            # All-gather through one autograd-aware all-reduce: this rank's row, zeros elsewhere.
            row = dist.get_rank(group)
            rows = all_reduce(nn.functional.pad(local[None], (0, 0, row, size - 1 - row)), group=group)
        else:
            rows = local[None]
        means, m2s, counts = rows[:, :channels], rows[:, channels:2 * channels], rows[:, 2 * channels:]
        count = counts.sum()
        if float(count) <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got {int(count)} over the "
                             f"BatchNorm group (input size {list(input.shape)})")
        mean = (counts * means).sum(0) / count
        var = (m2s + counts * (means - mean).square()).sum(0) / count
        return mean, var, count.detach()

    @classmethod
    def convert(cls, module: nn.Module, process_group: dist.ProcessGroup | None) -> nn.Module:
        """Replace every nn.BatchNorm2d in `module` (the module itself included) by a GroupBatchNorm2d sharing its
        parameters and buffers; returns the converted module (the same object unless it is a BatchNorm2d itself)."""
        out = module
        if isinstance(module, nn.BatchNorm2d):
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group)
            if module.affine:
                out.weight = module.weight
                out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert(child, process_group))
        del module
        return out


def convert_batchnorm(model: nn.Module, group_size: int, device_type: str | torch.device,
                      process_group: dist.ProcessGroup | None = None) -> nn.Module:
    """`model` with BatchNorm statistics over groups of `group_size` consecutive ranks; unchanged for group_size 1.

    device_type "cuda": torch.nn.SyncBatchNorm (all _BatchNorm layers, as `convert_sync_batchnorm` converts);
    "cpu": GroupBatchNorm2d (the nn.BatchNorm2d layers). Parameters, buffers, eps, momentum, affine and
    track_running_stats are kept. `process_group` defaults to `bn_process_groups(group_size)`, a collective: every
    rank must call this, in the same order. Call before DDP wraps the model (and before torch.compile)."""
    device_type = torch.device(device_type).type
    if device_type not in ("cuda", "cpu"):
        raise ValueError(f"BN_GROUP: no group BatchNorm for device type {device_type!r} (cuda or cpu)")
    check_group_size(group_size, _world()[1])
    if group_size == 1:
        return model
    if process_group is None:
        process_group = bn_process_groups(group_size)
    if dist.get_world_size(process_group) != group_size:
        raise ValueError(f"BN_GROUP={group_size} but the process group has {dist.get_world_size(process_group)} ranks")
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group)
    return GroupBatchNorm2d.convert(model, process_group)
