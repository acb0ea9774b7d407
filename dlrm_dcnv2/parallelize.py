"""Model parallel embeddings, data parallel dense part, and the optimizers that go with them.

`parallelize_dlrm` applies, in this order:
0. with TORCH_COMPILE=1, `torch.compile` of the dense blocks (common.parallelize's order:
   compile before the data-parallel wrapper),
1. fused Adagrad on the embedding tables (`apply_optimizer_in_backward`: FBGEMM
   updates each table inside the backward pass, no embedding gradient is stored),
2. TorchRec's planner, which picks per table a sharding type among the
   model-parallel ones the device supports (GPU: table-wise, row-wise,
   column-wise, table-row-wise, table-column-wise; CPU: table-wise,
   column-wise, table-column-wise — TorchRec has no CPU row-wise sharding),
3. `DistributedModelParallel`, which shards the tables, materialises every
   `meta` parameter on its device and wraps the dense part in DDP.
`build_dense_optimizer` is plain Adagrad with the same learning rate on the rest.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.types import ShardingPlan, ShardingType
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter

from common.parallelize import apply_compile
from dlrm_dcnv2.config import RULES
from dlrm_dcnv2.model import DLRMDCNv2

# Not data_parallel: a replicated 40M-row table is what this benchmark cannot afford.
MODEL_PARALLEL_TYPES = [ShardingType.TABLE_WISE.value, ShardingType.ROW_WISE.value,
                        ShardingType.COLUMN_WISE.value, ShardingType.TABLE_ROW_WISE.value,
                        ShardingType.TABLE_COLUMN_WISE.value]


def adagrad_kwargs(lr: float) -> dict:
    """closed_dlrm_dcnv2.yaml: eps 1e-8, initial accumulator 0, no LR decay, no weight decay."""
    return {"lr": lr, "eps": RULES.adagrad_epsilon}


def plan_sharding(model: DLRMDCNv2, device: torch.device, local_batch: int,
                  sharding_types: list[str] | None = None) -> ShardingPlan:
    """The planner's plan, computed on rank 0 and shared with every rank."""
    world = dist.get_world_size()
    local_world = torch.cuda.device_count() if device.type == "cuda" else world
    types = sharding_types or MODEL_PARALLEL_TYPES
    constraints = {config.name: ParameterConstraints(sharding_types=types)
                   for config in model.embeddings.embedding_bag_configs()}
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=world, compute_device=device.type, local_world_size=min(local_world, world)),
        batch_size=local_batch, constraints=constraints)
    return planner.collective_plan(model, None, dist.GroupMember.WORLD)


def parallelize_dlrm(model: DLRMDCNv2, *, device: torch.device, lr: float, local_batch: int,
                     sharding_types: list[str] | None = None, torch_compile: bool = False) -> DistributedModelParallel:
    """Shard `model` (built on `meta`) over the default process group; see the module docstring."""
    if not dist.is_initialized():
        raise RuntimeError("parallelize_dlrm needs a process group (one rank is fine)")
    if torch_compile:  # the dense blocks; TorchRec's sharded lookups run their own kernels
        apply_compile(model, ["bottom_mlp", "cross", "top_mlp"])
    apply_optimizer_in_backward(torch.optim.Adagrad, model.embeddings.parameters(), adagrad_kwargs(lr))
    plan = plan_sharding(model, device, local_batch, sharding_types)
    return DistributedModelParallel(model, device=device, plan=plan)


def build_optimizer(model: DistributedModelParallel, lr: float) -> CombinedOptimizer:
    """Dense Adagrad plus the embeddings' fused one, so `step()`/`state_dict()` cover both.

    `step()` only moves the dense parameters: the fused part already stepped in backward.
    """
    dense = KeyedOptimizerWrapper(dict(in_backward_optimizer_filter(model.named_parameters())),
                                  lambda params: torch.optim.Adagrad(params, **adagrad_kwargs(lr)))
    return CombinedOptimizer([model.fused_optimizer, dense])


def sharding_summary(model: DistributedModelParallel) -> dict[str, str]:
    """Table name -> sharding type, as planned (logged so a reader knows what ran)."""
    summary = {}
    for module_plan in model.plan.plan.values():
        for table, spec in module_plan.items():
            summary[table] = spec.sharding_type
    return summary



def load_full_state(model: torch.nn.Module, state: dict) -> None:
    """Copy unsharded tensors (a one-process model's state_dict) into this rank's shards.

    Used to start runs of different process counts from the same weights (tests).
    """
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            full = state[name]
            if isinstance(tensor, ShardedTensor):
                for shard in tensor.local_shards():
                    (r, c), (h, w) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    shard.tensor.copy_(full[r:r + h, c:c + w])
            else:
                tensor.copy_(full)
