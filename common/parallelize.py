"""Model transformations every benchmark applies, always in one order:

1. precision conversion — Transformer Engine FP8 linears (`common.te`) for
   PRECISION=fp8, on the modules a benchmark selects;
2. `torch.compile` of the repeated blocks (`apply_compile`), each in place
   (`nn.Module.compile`, so parameter names and checkpoints are unchanged);
3. data parallelism — DDP (`apply_ddp`), or FSDP2 with the run's
   `Precision.fsdp_policy()` (gpt3), or TorchRec's DistributedModelParallel (dlrm_dcnv2).

Compiling blocks before wrapping, rather than compiling the wrapped model,
keeps each block's backward its own graph: gradients become ready block by
block, so DDP's bucketed all-reduce and FSDP2's per-block reduce-scatter
overlap the rest of the backward pass (torchtitan applies compile, then FSDP,
the same way). `parallelize_ddp` is the whole sequence for a model trained
with plain data parallelism.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from common.precision import Precision
from common.te import Selector, apply_transformer_engine


def apply_compile(model: nn.Module, blocks: Iterable[str]) -> None:
    """`torch.compile` the named submodules in place (one compiled graph per block)."""
    names = list(blocks)
    if not names:
        raise ValueError(f"no blocks of {type(model).__name__} to compile")
    for name in names:
        model.get_submodule(name).compile()


def apply_ddp(model: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """DistributedDataParallel over all ranks (the model itself in a single process)."""
    if world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP, for evaluation: each rank scores its own shard, which DDP's forward (a
    collective when it syncs buffers) must not see, as shards may hold different numbers of batches."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def parallelize_ddp(model: nn.Module, *, device: torch.device, world_size: int, precision: Precision,
                    compile_blocks: Iterable[str] | None = None, fp8_select: Selector | None = None) -> nn.Module:
    """Move to the device, then steps 1-3 of the module docstring with DDP; returns the module to train."""
    model.to(device)
    if precision.fp8:
        if fp8_select is None:
            raise ValueError(f"{type(model).__name__} has no FP8 (Transformer Engine) path; use PRECISION=bf16")
        apply_transformer_engine(model, fp8_select)
    if compile_blocks is not None:
        apply_compile(model, compile_blocks)
    return apply_ddp(model, device, world_size)
