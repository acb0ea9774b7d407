"""Tensor (with sequence) parallelism and data parallelism for `gpt3.model.GPT`, on PyTorch's own engine.

`build_mesh` lays the world out as a ("dp", "tp") device mesh;
`apply_tensor_parallel` shards every block Megatron-style through
`torch.distributed.tensor.parallel`: QKV and fc1 column-parallel (whole heads
per rank, thanks to the per-head QKV layout), proj and fc2 row-parallel with a
reduce-scatter onto the sequence dimension, and the LayerNorms and residual
stream sequence-parallel between them; embeddings and the tied head stay
replicated (the embedding output is split along the sequence, the head's input
gathered). `apply_data_parallel` wraps the model in DDP over the "dp" group.
`pipeline_stages` cuts the model into PIPELINE_MODEL_PARALLEL x
INTERLEAVED_PIPELINE stages of consecutive layers (rank r holds stages r,
r + PP, ...) and `build_schedule` drives them with
`torch.distributed.pipelining` (1F1B, or interleaved 1F1B with virtual
stages). The output layer is tied to the word embeddings, so the last stage
keeps its own copy of them, and `sync_tied_embedding_grads` sums the two
copies' gradients (Megatron's embedding group) so they stay identical.
The same code runs on gloo/CPU and NCCL/GPU.

Not yet here (issue 4): combining the three kinds (DDP does not take DTensor
parameters; FSDP2 will), so one of TP, PP, DP may exceed 1 at a time.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                               RowwiseParallel, SequenceParallel, parallelize_module)
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B
from torch.nn.parallel import DistributedDataParallel

from gpt3.model import GPT


def build_mesh(device: torch.device, world_size: int, tensor_parallel: int = 1,
               pipeline_parallel: int = 1) -> DeviceMesh:
    """A ("pp", "dp", "tp") mesh; data parallelism takes what TP and PP leave."""
    model_parallel = tensor_parallel * pipeline_parallel
    if world_size % model_parallel:
        raise ValueError(f"TENSOR_MODEL_PARALLEL={tensor_parallel} x PIPELINE_MODEL_PARALLEL={pipeline_parallel} "
                         f"does not divide the {world_size} processes")
    shape = (pipeline_parallel, world_size // model_parallel, tensor_parallel)
    if not torch_dist.is_initialized():  # one process: a one-rank group, so the same mesh code runs
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=torch_dist.HashStore(),
                                      rank=0, world_size=1)
    return init_device_mesh(device.type, shape, mesh_dim_names=("pp", "dp", "tp"))


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
    """Tensor parallelism over "tp", then data parallelism over "dp" (pipeline stages: see below)."""
    tp, dp = mesh["tp"].size(), mesh["dp"].size()
    if sum(size > 1 for size in (tp, dp, mesh["pp"].size())) > 1:
        raise NotImplementedError("combining tensor, pipeline and data parallelism needs FSDP2 (not yet here)")
    if tp > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if dp > 1:
        return apply_data_parallel(model, mesh["dp"], device)
    return model


def pipeline_stages(model: GPT, pp_rank: int, pp_size: int, virtual: int) -> list[tuple[int, GPT]]:
    """(stage index, stage module) for the stages this rank holds, cut from a full model.

    Stage s of pp_size * virtual holds layers [s*L/n, (s+1)*L/n); the first also
    the embeddings, the last the head (with its own copy of the tied word embedding).
    """
    stages = pp_size * virtual
    if model.cfg.layers % stages:
        raise ValueError(f"{stages} pipeline stages do not divide the model's {model.cfg.layers} layers")
    per = model.cfg.layers // stages
    out = []
    for index in range(pp_rank, stages, pp_size):
        stage = copy.deepcopy(model) if virtual > 1 else model
        for name in list(stage.layers):
            if not index * per <= int(name) < (index + 1) * per:
                del stage.layers[name]
        first, last = index == 0, index == stages - 1
        if last and not first:
            stage.head.word = stage.embeddings.word  # registered here: updated by this stage's optimizer
        if not last:
            stage.head = None
        if not first:
            stage.embeddings = None
        out.append((index, stage))
    return out


def tied_embedding(stage: GPT) -> nn.Parameter | None:
    """The word-embedding weight this stage holds (first stage, or the last stage's copy)."""
    if stage.embeddings is not None:
        return stage.embeddings.word.weight
    if stage.head is not None:
        return stage.head.word.weight
    return None


def sync_tied_embedding_grads(stages: list[GPT], pp_mesh: DeviceMesh) -> None:
    """Sum the word-embedding gradients of the first and last stage, so both copies take the same step.

    Every pipeline rank joins the all-reduce; ranks without a copy add zeros.
    """
    if pp_mesh.size() == 1:
        return
    cfg, device = stages[0].cfg, next(stages[0].parameters()).device
    weights = [w for w in map(tied_embedding, stages) if w is not None]
    total = torch.zeros(cfg.vocab_size, cfg.hidden, device=device)
    for w in weights:
        if w.grad is not None:
            total += w.grad
    torch_dist.all_reduce(total, group=pp_mesh.get_group())
    for w in weights:
        w.grad = total.clone()


def build_schedule(stages: list[tuple[int, GPT]], pp_mesh: DeviceMesh, device: torch.device,
                   microbatches: int, loss_fn):
    """1F1B over one stage per rank, interleaved 1F1B over several."""
    pipeline = [PipelineStage(module, index, pp_mesh.size() * len(stages), device, group=pp_mesh.get_group())
                for index, module in stages]
    if len(pipeline) == 1:
        return Schedule1F1B(pipeline[0], microbatches, loss_fn=loss_fn)
    return ScheduleInterleaved1F1B(pipeline, microbatches, loss_fn=loss_fn)
