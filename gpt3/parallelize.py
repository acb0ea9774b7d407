"""Tensor (with sequence), pipeline and data parallelism for `gpt3.model.GPT`, on PyTorch's own engine.

The world is a ("pp", "dp", "tp") device mesh (`build_mesh`); every kind of
parallelism runs on its dimension of it, and any combination of sizes works.

- Tensor parallelism (`apply_tensor_parallel`, `torch.distributed.tensor.parallel`)
  shards every block Megatron-style: QKV and fc1 column-parallel (whole heads
  per rank, thanks to the per-head QKV layout), proj and fc2 row-parallel with
  a reduce-scatter onto the sequence dimension, and the LayerNorms and residual
  stream sequence-parallel between them; embeddings and the tied head stay
  replicated over "tp" (the embedding output is split along the sequence, the
  head's input gathered).
- Pipeline parallelism (`pipeline_stages`, `build_schedule`,
  `torch.distributed.pipelining`) cuts the model into PIPELINE_MODEL_PARALLEL x
  INTERLEAVED_PIPELINE stages of consecutive layers (rank r holds stages r,
  r + PP, ...), driven by 1F1B, or interleaved 1F1B with virtual stages. The
  output layer is tied to the word embeddings, so the last stage keeps its own
  copy of them, and `sync_tied_embedding_grads` sums the two copies' gradients
  over an "embedding group" of the first and last pipeline rank (Megatron's),
  so both take the same step.
- Data parallelism (`apply_data_parallel`) is FSDP2 (`fully_shard`) over "dp":
  each block is its own unit, parameters (TP DTensors included, which become
  2-D (dp, tp) DTensors), gradients and Adam moments are sharded over the
  data-parallel ranks, gradients reduce-scattered (averaged).

`parallelize_stage` applies TP, then FSDP2, to one module (the whole model or
a pipeline stage). Build the model on the `meta` device, parallelize it, then
`to_empty` + `gpt3.checkpoint.load_checkpoint`: every rank reads only its own
shard of each array. The same code runs on gloo/CPU and NCCL/GPU.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                               RowwiseParallel, SequenceParallel, parallelize_module)
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B

from common.dist import ensure_process_group
from gpt3.model import GPT


def build_mesh(device: torch.device, world_size: int, tensor_parallel: int = 1,
               pipeline_parallel: int = 1) -> DeviceMesh:
    """A ("pp", "dp", "tp") mesh; data parallelism takes what TP and PP leave."""
    model_parallel = tensor_parallel * pipeline_parallel
    if world_size % model_parallel:
        raise ValueError(f"TENSOR_MODEL_PARALLEL={tensor_parallel} x PIPELINE_MODEL_PARALLEL={pipeline_parallel} "
                         f"does not divide the {world_size} processes")
    shape = (pipeline_parallel, world_size // model_parallel, tensor_parallel)
    ensure_process_group(device)  # one process: a one-rank group, so the same mesh code runs
    return init_device_mesh(device.type, shape, mesh_dim_names=("pp", "dp", "tp"))


def apply_tensor_parallel(model: GPT, tp_mesh: DeviceMesh) -> None:
    """Shard `model` (the whole model or a pipeline stage) in place over tp_mesh (see the module docstring)."""
    cfg, tp = model.cfg, tp_mesh.size()
    for name, value in (("heads", cfg.heads), ("ffn", cfg.ffn), ("seq_len", cfg.seq_len)):
        if value % tp:
            raise ValueError(f"tensor-parallel size {tp} does not divide the model's {name} ({value})")
    plan = {}
    if model.embeddings is not None:  # the full embedding output, cut along the sequence: each rank keeps its slice
        plan["embeddings"] = PrepareModuleOutput(output_layouts=Replicate(), desired_output_layouts=Shard(1))
    if model.head is not None:
        plan["head"] = PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),),
                                          use_local_output=True)
    if plan:
        parallelize_module(model, tp_mesh, plan)
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


def apply_data_parallel(model: GPT, dp_mesh: DeviceMesh, reshard_after_forward: bool = True) -> None:
    """FSDP2 over dp_mesh: one unit per block, the rest (embeddings, head) in the root unit.

    With pipeline parallelism pass reshard_after_forward=False: a stage runs
    many micro-batches per step and would otherwise all-gather for each.
    """
    for block in model.layers.values():
        fully_shard(block, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=dp_mesh, reshard_after_forward=reshard_after_forward)


def parallelize_stage(model: GPT, mesh: DeviceMesh, pipelined: bool = False) -> GPT:
    """Tensor parallelism over "tp", then FSDP2 over "dp", applied in place; returns the module."""
    if mesh["tp"].size() > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if mesh["dp"].size() > 1:
        apply_data_parallel(model, mesh["dp"], reshard_after_forward=not pipelined)
    return model


def set_gradient_sync(modules: list[nn.Module], enabled: bool) -> None:
    """FSDP2's no_sync: skip the reduce-scatter on all but the last micro-batch of a step."""
    for module in modules:
        if hasattr(module, "set_requires_gradient_sync"):
            module.set_requires_gradient_sync(enabled)


def pipeline_stages(model: GPT, pp_rank: int, pp_size: int, virtual: int) -> list[tuple[int, GPT]]:
    """(stage index, stage module) for the stages this rank holds, cut from a full (or `meta`) model.

    Stage s of pp_size * virtual holds layers [s*L/n, (s+1)*L/n), keeping their
    global names; the first also the embeddings, the last the head (with its
    own copy of the tied word embedding, registered as `head.word`).
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


def tied_copies(stages: list[GPT]) -> set[int]:
    """ids of the last stage's copy of the tied embedding (counted once, in the first stage, when clipping)."""
    return {id(m.head.word.weight) for m in stages if m.embeddings is None and m.head is not None}


def embedding_group(mesh: DeviceMesh):
    """Megatron's embedding group: this rank's first and last pipeline rank (None when PP is 1).

    Every rank creates every group (a collective), in the same order.
    """
    pp = mesh["pp"].size()
    if pp == 1:
        return None
    ranks = mesh.mesh  # [pp, dp, tp] global ranks
    mine = None
    for d in range(ranks.shape[1]):
        for t in range(ranks.shape[2]):
            members = [int(ranks[0, d, t]), int(ranks[pp - 1, d, t])]
            group = torch_dist.new_group(members)
            if torch_dist.get_rank() in members:
                mine = group
    return mine


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def sync_tied_embedding_grads(stages: list[GPT], group) -> None:
    """Sum the word-embedding gradients of the first and last stage, so both copies take the same step.

    `group` is `embedding_group(mesh)`; both copies are sharded alike over "dp"
    (same shape, same FSDP2 layout), so their local gradient shards add up.
    """
    if group is None:
        return
    weights = [w for w in map(tied_embedding, stages) if w is not None]
    if not weights:
        return
    grads = [_local(w.grad) for w in weights if w.grad is not None]
    total = torch.stack(grads).sum(0) if grads else torch.zeros_like(_local(weights[0]))
    torch_dist.all_reduce(total, group=group)
    for w in weights:
        if w.grad is None:
            w.grad = torch.zeros_like(w)
        _local(w.grad).copy_(total)


def build_schedule(stages: list[tuple[int, GPT]], pp_mesh: DeviceMesh, device: torch.device,
                   microbatches: int, loss_fn):
    """1F1B over one stage per rank, interleaved 1F1B over several."""
    pipeline = [PipelineStage(module, index, pp_mesh.size() * len(stages), device, group=pp_mesh.get_group())
                for index, module in stages]
    if len(pipeline) == 1:
        return Schedule1F1B(pipeline[0], microbatches, loss_fn=loss_fn)
    return ScheduleInterleaved1F1B(pipeline, microbatches, loss_fn=loss_fn)
