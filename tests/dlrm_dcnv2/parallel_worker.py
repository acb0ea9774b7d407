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
from dlrm_dcnv2 import data
from dlrm_dcnv2.config import DlrmRunConfig
from dlrm_dcnv2.model import ModelShape
from dlrm_dcnv2.parallelize import sharding_summary
from dlrm_dcnv2.train import Trainer

STEPS = 4


def main(data_dir: str, init: str, out: str, types: str = "") -> None:
    denv = dist.read_dist_env()
    device = dist.select_device(denv, "cpu")
    dist.init_distributed(denv, device)
    dist.ensure_process_group(device)
    cfg = DlrmRunConfig(global_batch=256, eval_batch=384, lr=0.02, model_size="small", device="cpu")
    shape = ModelShape.small()
    trainer = Trainer(cfg, shape, device, data.open_split(data_dir, "train", "numpy", shape),
                      data.open_split(data_dir, "eval", "numpy", shape), init_state=torch.load(init),
                      sharding_types=types.split(",") if types else None)
    losses = []
    for _ in range(STEPS):
        batch = next(trainer.train_iter)
        loss = trainer.train_step(batch)
        total = dist.all_reduce_sum(torch.stack([loss * batch.valid, torch.tensor(float(batch.valid))]))
        losses.append(float(total[0] / total[1]))
    auc = trainer.evaluate()
    if torch_dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump({"losses": losses, "auc": auc, "sharding": sharding_summary(trainer.model)}, f)
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
