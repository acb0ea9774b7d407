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

`parallelize_stage` applies TP, then torch.compile of each block, then FSDP2
(with the run's bf16 `MixedPrecisionPolicy`), to one module (the whole model
or a pipeline stage). `build_stages` is the whole sequence in the project's
fixed order (common.parallelize): the model built on the `meta` device,
Transformer Engine linears for FP8, the pipeline cut, `parallelize_stage`,
then `to_empty` — and `gpt3.checkpoint.load_checkpoint` fills it: every rank
reads only its own shard of each array. The same code runs on gloo/CPU and
NCCL/GPU.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, PrepareModuleOutput,
                                               RowwiseParallel, SequenceParallel, parallelize_module)
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B

from common.dist import ensure_process_group
from common.parallelize import apply_compile
from common.precision import Precision
from common.te import apply_transformer_engine
from gpt3.model import GPT, GPTConfig


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


def apply_data_parallel(model: GPT, dp_mesh: DeviceMesh, reshard_after_forward: bool = True,
                        mp_policy: MixedPrecisionPolicy | None = None) -> None:
    """FSDP2 over dp_mesh: one unit per block, the rest (embeddings, head) in the root unit.

    With pipeline parallelism pass reshard_after_forward=False: a stage runs
    many micro-batches per step and would otherwise all-gather for each.
    `mp_policy` (`Precision.fsdp_policy()`): bf16 all-gathers and compute, fp32 reduction.
    """
    kwargs = {"mesh": dp_mesh, "reshard_after_forward": reshard_after_forward}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    for block in model.layers.values():
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)


def parallelize_stage(model: GPT, mesh: DeviceMesh, pipelined: bool = False, compile_blocks: bool = False,
                      mp_policy: MixedPrecisionPolicy | None = None) -> GPT:
    """Tensor parallelism over "tp", torch.compile of each block, then FSDP2 over "dp", in place; returns it."""
    if mesh["tp"].size() > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if compile_blocks:
        apply_compile(model, [f"layers.{name}" for name in model.layers])
    if mesh["dp"].size() > 1:
        apply_data_parallel(model, mesh["dp"], reshard_after_forward=not pipelined, mp_policy=mp_policy)
    return model


BLOCK_LINEAR = re.compile(r"layers\.\d+\.(attention\.(qkv|proj)|mlp\.(fc1|fc2))$")


def block_linears(name: str, module: nn.Module) -> bool:
    """The linears TE runs in FP8: QKV, proj, fc1, fc2 of every block (embeddings, norms, head stay bf16)."""
    return BLOCK_LINEAR.search(name) is not None


def build_stages(arch: GPTConfig, mesh: DeviceMesh, device: torch.device, *, pipeline_parallel: int,
                 interleaved: int, precision: Precision, torch_compile: bool) -> list[tuple[int, GPT]]:
    """This rank's pipeline stages [(index, module)], in the fixed order: built on `meta`, TE linears (FP8),
    cut into stages, TP, compile, FSDP2, then materialised without values (the checkpoint fills them)."""
    with torch.device("meta"):
        model = GPT(arch)
    if precision.fp8:
        if mesh["tp"].size() != 1:
            raise ValueError("PRECISION=fp8 runs with TENSOR_MODEL_PARALLEL=1 (TE tensor parallelism is not wired)")
        apply_transformer_engine(model, block_linears)
    stages = (pipeline_stages(model, mesh["pp"].get_local_rank(), pipeline_parallel, interleaved)
              if pipeline_parallel > 1 else [(0, model)])
    for _, stage in stages:
        parallelize_stage(stage, mesh, pipelined=pipeline_parallel > 1, compile_blocks=torch_compile,
                          mp_policy=precision.fsdp_policy())
        stage.to_empty(device=device)
    return stages


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


@dataclass
class RankModel:
    """This rank's part of the model: its pipeline stages [(index, module)], the mesh, and with PP > 1 the
    pipeline schedule that runs MINIBS / MICRO_BATCH_SIZE micro-batches through them (training and eval)."""

    stages: list
    mesh: DeviceMesh
    num_stages: int
    pipeline: object = None

    @property
    def modules(self) -> list:
        return [m for _, m in self.stages]

    @property
    def first(self) -> bool:
        return self.stages[0][0] == 0

    @property
    def last(self) -> bool:
        return self.stages[-1][0] == self.num_stages - 1

    @classmethod
    def build(cls, stages, mesh: DeviceMesh, device: torch.device, num_stages: int, microbatches: int,
              loss_fn) -> "RankModel":
        pipeline = build_schedule(stages, mesh["pp"], device, microbatches, loss_fn) if num_stages > 1 else None
        return cls(stages, mesh, num_stages, pipeline)

    def pipelined(self, *, tokens=None, inputs=None, targets=None, losses=None, train: bool):
        """One pass of the pipeline schedule: the first stage feeds the inputs, the last gets the targets."""
        inputs = tokens[:, :-1] if tokens is not None else inputs
        targets = tokens[:, 1:] if tokens is not None else targets
        run = self.pipeline.step if train else self.pipeline.eval
        run(*([inputs] if self.first else []), **({"target": targets, "losses": losses} if self.last else {}))
