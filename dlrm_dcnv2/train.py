"""DLRM-DCNv2 on Criteo 1TB multi-hot to AUC 0.80275 within one epoch (MLPerf Training v3.0, closed).

Launch on one DGX H100 without SLURM (torchrun, 8 processes, 10 logged experiments):
    source config_DGXH100_1x8x6912.sh && DATADIR=/data/criteo LOGDIR=$PWD/results NEXP=10 ../common/run_local.sh
on many nodes (one srun task per GPU):
    export NEXP=10; source config_DGXH100_8x8x2112.sh
    CONT=<image> DATADIR=/data/criteo LOGDIR=$PWD/results sbatch -N $DGXNNODES -t $WALLTIME run.sub

DATADIR holds the reference's day_{0..23}_{labels,dense}.npy and
day_{i}_sparse_multi_hot.npz (DATA_FORMAT=numpy) or NVIDIA's train_data.bin and
val_data.bin (DATA_FORMAT=binary). One pass over days 0-22 in order, global
batch BATCHSIZE split evenly over the processes; Adagrad with one learning rate
(fused into the backward for the sharded tables); exact AUC over the whole
validation set 20 times per epoch; stop at 0.80275.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torchmetrics.classification import BinaryAUROC

from common import dist
from common.config import SystemConfig, load_configs, parse_run_arguments, run_arguments
from common.harness import Block, MLPerfRun, NonFiniteLoss, train_to_target
from common.mlperf_log import MLPerfLogger, constants
from dlrm_dcnv2 import data
from dlrm_dcnv2.config import RULES, DlrmRunConfig
from dlrm_dcnv2.model import DLRMDCNv2, ModelShape
from dlrm_dcnv2.parallelize import build_optimizer, parallelize_dlrm, sharding_summary

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = run_arguments(__doc__, DlrmRunConfig, "Criteo 1TB multi-hot data (see above)")
    return parse_run_arguments(parser, BENCH_DIR, argv)


def model_shape(cfg: DlrmRunConfig) -> ModelShape:
    return ModelShape.small() if cfg.model_size == "small" else ModelShape.full()


def eval_steps(steps_per_epoch: int) -> list[int]:
    """Steps after which to evaluate: every floor(steps/20), the 20th at the end of the epoch (rules: 20 per epoch)."""
    every = steps_per_epoch // RULES.evals_per_epoch
    if every == 0:
        raise ValueError(f"an epoch of {steps_per_epoch} steps cannot hold {RULES.evals_per_epoch} evaluations")
    return [every * k for k in range(1, RULES.evals_per_epoch)] + [steps_per_epoch]


class Trainer:
    """Sharded model, optimizers and data of one run; `train_block`/`evaluate` feed the harness."""

    def __init__(self, cfg: DlrmRunConfig, shape: ModelShape, device: torch.device,
                 train_source: data.RowSource, eval_source: data.RowSource, init_state: dict | None = None,
                 sharding_types: list[str] | None = None):
        self.cfg, self.shape, self.device = cfg, shape, device
        self.rank, self.world_size = torch_dist.get_rank(), torch_dist.get_world_size()
        self.local_batch = cfg.local_batch(self.world_size)
        self.model = parallelize_dlrm(DLRMDCNv2(shape, device=torch.device("meta")), device=device, lr=cfg.lr,
                                      local_batch=self.local_batch, sharding_types=sharding_types)
        if init_state is not None:
            load_full_state(self.model, init_state)
        self.optimizer = build_optimizer(self.model, cfg.lr)
        self.train_source, self.eval_source = train_source, eval_source
        self.steps_per_epoch = data.steps_per_epoch(train_source, cfg.global_batch)
        self.train_iter = data.train_batches(train_source, cfg.global_batch, self.rank, self.world_size,
                                             shape.hotness, device)
        # Exact AUC (all scores kept and sorted), gathered from every rank at compute().
        self.auc = BinaryAUROC(thresholds=None).to(device)
        self.step = 0
        self.samples_trained = 0
        self._stats = torch.zeros(3, device=device, dtype=torch.float64)  # local rows, loss sum, non-finite

    def autocast(self):
        if self.cfg.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def hyperparameters(self) -> dict:
        return {
            constants.GLOBAL_BATCH_SIZE: self.cfg.global_batch,
            constants.GRADIENT_ACCUMULATION_STEPS: 1,
            constants.OPT_NAME: constants.ADAGRAD,
            constants.OPT_BASE_LR: self.cfg.lr,
            constants.OPT_ADAGRAD_LR_DECAY: 0,
            constants.OPT_WEIGHT_DECAY: 0,
            constants.OPT_ADAGRAD_INITIAL_ACCUMULATOR_VALUE: RULES.adagrad_initial_accumulator,
            constants.OPT_ADAGRAD_EPSILON: RULES.adagrad_epsilon,
            constants.OPT_LR_WARMUP_STEPS: 0,  # constant learning rate (closed_dlrm_dcnv2.yaml)
            constants.OPT_LR_DECAY_START_STEP: 0,
            constants.OPT_LR_DECAY_STEPS: 0,
            "eval_batch_size": self.cfg.eval_batch,
        }

    def train_step(self, batch: data.Batch) -> torch.Tensor:
        """One step; the embeddings are updated inside backward(), the dense part by optimizer.step()."""
        self.step += 1
        with self.autocast():
            logits = self.model(batch.dense, batch.sparse)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss.detach()
        self._stats += torch.stack([torch.tensor(batch.valid, device=self.device, dtype=torch.float64),
                                    loss.double() * batch.valid, (~torch.isfinite(loss)).double()])
        return loss

    def train_block(self, block: Block) -> int:
        """Steps block.first_epoch..block.last_epoch (for DLRM the harness's "epochs" are steps)."""
        self.model.train()
        while self.step < block.last_epoch:
            self.train_step(next(self.train_iter))
        totals = dist.all_reduce_sum(self._stats.clone())  # host sync: the block's time is real
        self._stats.zero_()
        if totals[2] > 0:
            raise NonFiniteLoss(f"non-finite training loss before step {self.step}")
        self.samples_trained += int(totals[0])
        if self.rank == 0:
            print(f"step {self.step}: mean training loss {float(totals[1] / totals[0]):.5f}", flush=True)
        return int(totals[0])

    def epoch_fraction(self) -> float:
        return self.samples_trained / len(self.train_source)

    @torch.no_grad()
    def evaluate(self, block: Block | None = None) -> float:
        """AUC over every validation row (all ranks); padding rows are not scored."""
        self.model.eval()
        self.auc.reset()
        scored = torch.zeros(1, device=self.device, dtype=torch.int64)
        for batch in data.eval_batches(self.eval_source, self.cfg.eval_batch, self.rank, self.world_size,
                                       self.shape.hotness, self.device):
            with self.autocast():
                logits = self.model(batch.dense, batch.sparse)
            self.auc.update(torch.sigmoid(logits[:batch.valid].float()), batch.labels[:batch.valid].long())
            scored += batch.valid
        dist.all_reduce_sum(scored)
        if int(scored) != len(self.eval_source):
            raise RuntimeError(f"scored {int(scored)} validation rows, expected {len(self.eval_source)}")
        return float(self.auc.compute())


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


def main(argv=None) -> int:
    args = parse_args(argv)
    system, cfg = load_configs(args.config, SystemConfig, DlrmRunConfig)
    denv = dist.read_dist_env()
    logger = MLPerfLogger(rank=denv.rank, filename=args.log_file)
    reached = False
    with MLPerfRun(logger, RULES.benchmark, system) as run:
        device, seed = dist.start(denv, cfg.device, args.seed)
        dist.ensure_process_group(device)  # DistributedModelParallel needs one, even for one process
        run.log_seed(seed)
        torch.manual_seed(seed)  # the same dense initialisation on every rank
        shape = model_shape(cfg)
        train_source = data.open_split(args.data_dir, "train", cfg.data_format, shape)
        eval_source = data.open_split(args.data_dir, "eval", cfg.data_format, shape)
        trainer = Trainer(cfg, shape, device, train_source, eval_source)
        logger.events(trainer.hyperparameters())
        logger.event("sharding", sharding_summary(trainer.model))
        logger.event("data_synthetic", data.is_synthetic(args.data_dir))
        run.start_timed_region()
        logger.event(constants.TRAIN_SAMPLES, len(train_source))
        # The true count: a synthetic or partial validation set is not the rules' 89,137,319 rows.
        logger.event(constants.EVAL_SAMPLES, len(eval_source))
        ends = eval_steps(trainer.steps_per_epoch)  # one epoch at most (rules)
        blocks = [Block(first, last - first + 1) for first, last in zip([1] + [e + 1 for e in ends[:-1]], ends)]
        reached = train_to_target(run, blocks, trainer.train_block, trainer.evaluate,
                                  reached=lambda auc: auc >= RULES.target_auc,
                                  progress=lambda block: trainer.epoch_fraction())
    dist.shutdown()
    return 0 if reached else 1


if __name__ == "__main__":
    raise SystemExit(main())
