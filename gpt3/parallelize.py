"""Tensor (with sequence) parallelism and data parallelism for `gpt3.model.GPT`, on PyTorch's own engine.

`build_mesh` lays the world out as a ("dp", "tp") device mesh;
`apply_tensor_parallel` shards every block Megatron-style through
`torch.distributed.tensor.parallel`: QKV and fc1 column-parallel (whole heads
per rank, thanks to the per-head QKV layout), proj and fc2 row-parallel with a
reduce-scatter onto the sequence dimension, and the LayerNorms and residual
stream sequence-parallel between them; embeddings and the tied head stay
replicated (the embedding output is split along the sequence, the head's input
gathered). `apply_data_parallel` wraps the model in DDP over the "dp" group.
The same code runs on gloo/CPU and NCCL/GPU.

Not yet here (issue 4): pipeline parallelism, and data parallelism combined with
tensor parallelism (DDP does not take DTensor parameters; FSDP2 will).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                               RowwiseParallel, SequenceParallel, parallelize_module)
from torch.nn.parallel import DistributedDataParallel

from gpt3.model import GPT


def build_mesh(device: torch.device, world_size: int, tensor_parallel: int) -> DeviceMesh:
    if world_size % tensor_parallel:
        raise ValueError(f"TENSOR_MODEL_PARALLEL={tensor_parallel} does not divide the {world_size} processes")
    return init_device_mesh(device.type, (world_size // tensor_parallel, tensor_parallel), mesh_dim_names=("dp", "tp"))


def apply_tensor_parallel(model: GPT, tp_mesh: DeviceMesh) -> None:
    """Shard `model` in place over tp_mesh (see the module docstring)."""
    cfg, tp = model.cfg, tp_mesh.size()
    for name, value in (("heads", cfg.heads), ("ffn", cfg.ffn), ("seq_len", cfg.seq_len)):
        if value % tp:
            raise ValueError(f"tensor-parallel size {tp} does not divide the model's {name} ({value})")
    parallelize_module(model, tp_mesh, {
        # the full embedding output, cut along the sequence: each rank keeps its slice
        "embeddings": PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1)),
        "head": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                   use_local_output=True),
    })
    for block in model.layers.values():
        parallelize_module(block, tp_mesh, {
            "attn_norm": SequenceParallel(),
            "attention": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "attention.qkv": ColwiseParallel(),
            "attention.proj": RowwiseParallel(output_layouts=Shard(1)),
            "mlp_norm": SequenceParallel(),
            "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
            "mlp.fc1": ColwiseParallel(),
            "mlp.fc2": RowwiseParallel(output_layouts=Shard(1)),
        })


def apply_data_parallel(model: nn.Module, dp_mesh: DeviceMesh, device: torch.device) -> nn.Module:
    return DistributedDataParallel(model, process_group=dp_mesh.get_group(),
                                   device_ids=[device.index] if device.type == "cuda" else None)


def parallelize(model: GPT, mesh: DeviceMesh, device: torch.device) -> nn.Module:
    """Tensor parallelism over "tp", then data parallelism over "dp"."""
    tp, dp = mesh["tp"].size(), mesh["dp"].size()
    if tp > 1 and dp > 1:
        raise NotImplementedError("data parallelism together with tensor parallelism needs FSDP2 (not yet here)")
    if tp > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if dp > 1:
        return apply_data_parallel(model, mesh["dp"], device)
    return model
