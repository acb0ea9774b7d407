"""One rank of a short DLRM run from given weights (launched by test_parallel.py through torchrun).

    python -m torch.distributed.run --nproc_per_node=N tests/dlrm_dcnv2/parallel_worker.py DATA INIT OUT [TYPES]

Trains STEPS steps at global batch 256, then evaluates; rank 0 writes the global mean
loss of every step, the AUC and the sharding plan to OUT (json). TYPES (comma-separated)
restricts the planner's sharding types.
"""
import json
import sys

import torch
import torch.distributed as torch_dist

from common import dist
from common.precision import Precision
from dlrm_dcnv2 import data
from dlrm_dcnv2.config import DlrmRunConfig
from dlrm_dcnv2.model import DLRMDCNv2, ModelShape
from dlrm_dcnv2.parallelize import build_optimizer, load_full_state, parallelize_dlrm, sharding_summary
from dlrm_dcnv2.train import auc, build_step

STEPS = 4


def main(data_dir: str, init: str, out: str, types: str = "") -> None:
    denv = dist.read_dist_env()
    device = dist.select_device(denv, "cpu")
    dist.init_distributed(denv, device)
    dist.ensure_process_group(device)
    cfg = DlrmRunConfig(global_batch=256, eval_batch=384, lr=0.02)
    shape = ModelShape.small()
    model = parallelize_dlrm(DLRMDCNv2(shape, device=torch.device("meta")), device=device, lr=cfg.lr,
                             local_batch=cfg.local_batch(denv.world_size),
                             sharding_types=types.split(",") if types else None)
    load_full_state(model, torch.load(init))
    step = build_step(model, build_optimizer(model, cfg.lr), Precision("fp32", "cpu"), device)
    batches = data.train_batches(data.open_split(data_dir, "train", "numpy", shape), cfg.global_batch, denv.rank,
                                 denv.world_size, shape.hotness, device)
    losses = []
    for _ in range(STEPS):
        step(batches)
        losses.append(step.monitor.drain().mean_loss)  # over the ranks: each rank's loss of its equal share
    step.train_mode(False)  # as the harness evaluates: eval mode, no gradients
    with torch.no_grad():
        value = auc(model, data.open_split(data_dir, "eval", "numpy", shape), cfg, shape, device)
    if torch_dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump({"losses": losses, "auc": value, "sharding": sharding_summary(model)}, f)
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
    dist.leave(0)  # gloo's threads can abort a finalizing interpreter (common.dist.exit_after)
