"""One training step, the same for every benchmark: learning rate, micro-batches, backward, update, loss check.

A benchmark supplies its forward-and-loss (`loss_fn(batch) -> scalar`), what
a batch counts for (`count(batch)`: samples, for throughput and `epoch_num`),
its optimizer and its learning-rate rule (`lr(step)`, step 0 first). The
step then
1. sets the learning rate of every parameter group (the one place that does),
2. takes `accumulation` micro-batches from the batch iterator and runs each
   forward under the run's precision (`Precision.autocast`) and backward with
   the loss divided by `accumulation`; gradients are reduced across ranks on
   the last micro-batch only (DDP `no_sync`, FSDP2 `set_requires_gradient_sync`),
3. calls `before_update` (clipping, tied-weight synchronisation), steps the
   optimizer, clears the gradients and calls `after_update` (rnnt's EMA of the weights),
4. adds the loss to `LossMonitor`, which keeps its statistics on the device:
   ranks agree on them — a device sync and one small all-reduce — only every
   `check_every` steps and at the end of each block, where a non-finite loss
   ends the run with `NonFiniteLoss`.
Pipeline-parallel models, whose schedule runs the micro-batches itself, pass
their own `forward_backward`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from common import dist
from common.precision import Precision

# Steps between two agreements on the loss: a host-device sync point, so not every step on a GPU.
CHECK_EVERY = 50


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class DataExhausted(RuntimeError):
    """The training data ended before the schedule did."""


def optimizer_kernels(device: torch.device) -> dict:
    """`torch.optim` keyword arguments for the parameters' device: on a GPU one fused kernel over every
    parameter (the role of apex's FusedAdam/FusedSGD in NVIDIA's v3.0 code); elsewhere torch's loop over the
    parameters, which the CPU configs' seed sweeps were measured with (torch's CPU fused kernels are faster,
    4x for retinanet's Adam, but round differently, so every seed would take another path)."""
    return {"fused": True} if device.type == "cuda" else {"foreach": False}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at `lr`, times the group's `lr_scale` where it has one (maskrcnn's biases train at 2x)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


@contextlib.contextmanager
def gradient_sync(modules: Sequence[nn.Module], enabled: bool):
    """Within this block, backward passes reduce gradients across ranks only when `enabled`."""
    if enabled:
        yield
        return
    with contextlib.ExitStack() as stack:
        for module in modules:
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
            elif hasattr(module, "set_requires_gradient_sync"):  # FSDP2 (fully_shard)
                module.set_requires_gradient_sync(False)
                stack.callback(module.set_requires_gradient_sync, True)
        yield


@dataclass(frozen=True)
class BlockStats:
    samples: int  # trained in the block, all ranks
    mean_loss: float  # over the steps (and ranks) that computed a loss


class LossMonitor:
    """Per-step loss statistics on the device; see the module docstring.

    `replicas` ranks see each sample (tensor- and pipeline-parallel ranks share
    their data-parallel rank's batch), so the all-reduced count is divided by it.
    """

    def __init__(self, device: torch.device, replicas: int = 1, check_every: int = CHECK_EVERY):
        self.device, self.replicas, self.check_every = device, replicas, check_every
        self._stats = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, losses, samples, non-finite
        self._steps = 0
        self.samples_trained = 0  # all ranks, as of the last drain()

    def add(self, loss: torch.Tensor | None, samples) -> None:
        self._steps += 1
        samples = torch.as_tensor(samples, dtype=torch.float64, device=self.device)
        if loss is None:  # a pipeline stage without the head computes no loss
            self._stats[2] += samples
        else:
            loss = loss.detach().double()
            finite = torch.isfinite(loss)
            self._stats += torch.stack([torch.where(finite, loss, torch.zeros_like(loss)), torch.ones_like(loss),
                                        samples, (~finite).double()])
        if self._steps % self.check_every == 0:
            self._agree()

    def _agree(self) -> torch.Tensor:
        totals = dist.all_reduce_sum(self._stats.clone())
        if totals[3] > 0:  # the host reads the device here
            raise NonFiniteLoss(f"non-finite training loss in {int(totals[3])} step(s) before step {self._steps}")
        return totals

    def drain(self) -> BlockStats:
        """Agree across ranks, check, and start counting afresh (called at the end of every block)."""
        totals = self._agree()
        self._stats.zero_()
        samples = round(float(totals[2]) / self.replicas)
        self.samples_trained += samples
        return BlockStats(samples, float(totals[0] / totals[1]) if totals[1] > 0 else float("nan"))


class TrainStep:
    """Callable on a batch iterator: one optimizer step (see the module docstring)."""

    def __init__(self, modules: nn.Module | Sequence[nn.Module], optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Any], torch.Tensor], *, precision: Precision, device: torch.device,
                 count: Callable[[Any], Any], lr: Callable[[int], float] | None = None, accumulation: int = 1,
                 before_update: Callable[[], None] | None = None, after_update: Callable[[], None] | None = None,
                 forward_backward: Callable[[list], torch.Tensor | None] | None = None, replicas: int = 1,
                 check_every: int = CHECK_EVERY):
        if accumulation < 1:
            raise ValueError(f"gradient accumulation of {accumulation} micro-batches")
        self.modules = list(modules) if isinstance(modules, (list, tuple)) else [modules]
        self.optimizer, self.loss_fn, self.precision, self.count = optimizer, loss_fn, precision, count
        self.lr, self.accumulation, self.before_update = lr, accumulation, before_update
        self.after_update = after_update
        self.forward_backward = forward_backward or self.accumulate
        self.monitor = LossMonitor(device, replicas, check_every)
        self.steps = 0  # optimizer steps taken

    def train_mode(self, training: bool = True) -> None:
        for module in self.modules:
            module.train(training)

    def accumulate(self, micro_batches: list) -> torch.Tensor:
        """Backward over the micro-batches, gradients reduced on the last; returns their mean loss."""
        total = None
        for i, batch in enumerate(micro_batches):
            with gradient_sync(self.modules, enabled=i == len(micro_batches) - 1):
                with self.precision.autocast():
                    loss = self.loss_fn(batch)
                (loss / len(micro_batches)).backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total / len(micro_batches)

    def __call__(self, batches: Iterator) -> None:
        if self.lr is not None:
            set_lr(self.optimizer, self.lr(self.steps))
        micro_batches = []
        for _ in range(self.accumulation):
            try:
                micro_batches.append(next(batches))
            except StopIteration:
                raise DataExhausted(f"the training data ended at step {self.steps}, before the schedule") from None
        loss = self.forward_backward(micro_batches)
        if self.before_update is not None:
            self.before_update()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_update is not None:
            self.after_update()
        self.steps += 1
        self.monitor.add(loss, sum(torch.as_tensor(self.count(b)) for b in micro_batches))
