"""ResNet-50's run plan (what a run logs and where it evaluates) against NVIDIA's v3.0 logs, and whole epochs."""
from __future__ import annotations

from pathlib import Path

import torch

from common.config import RuntimeConfig, SystemConfig, load_configs
from resnet50.config import ResNetConfig
from resnet50.data import WholeEpochSampler
from resnet50.train import run_plan

BENCH = Path(__file__).resolve().parents[2] / "resnet50"


def plan_of(name: str, **env):
    system, runtime, cfg = load_configs(BENCH / name, SystemConfig, RuntimeConfig, ResNetConfig, environ=env)
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node)


def test_8_nodes_plan_is_nvidias():
    # NVIDIA/results/dgxh100_n8_ngc23.04_mxnet/resnet/result_0.txt: global batch 3200, evaluations at epochs
    # 3, 7, ..., 35, train_samples 1281167, eval_samples 50000, model_bn_span 50
    plan = plan_of("config_DGXH100_8x8x50x1.sh")
    h = plan.hyperparameters
    assert (h["global_batch_size"], h["model_bn_span"], h["d_batch_size"]) == (3200, 50, 50)
    assert [b.epoch_num for b in plan.schedule if b.evaluate] == list(range(3, 36, 4))
    assert (plan.train_samples, plan.eval_samples) == (1281167, 50000)
    assert plan.schedule[0].until_step == 3 * 401  # 1,281,167 / 3,200 = 400.4: epochs rounded up
    assert h["lars_opt_learning_rate_decay_steps"] == (37 - 2) * 401


def test_96_nodes_trains_40_steps_an_epoch_and_448_nodes_spans_batchnorm_over_2_gpus():
    plan = plan_of("config_DGXH100_96x8x42x1.sh")  # 1,281,167 / 32,256 = 39.7
    assert plan.schedule[0].until_step == plan.schedule[0].epoch_count * 40
    h = plan_of("config_DGXH100_448x8x16x1.sh").hyperparameters  # NVIDIA's config_DGXH100_multi_448x8x16.sh
    assert (h["model_bn_span"], h["d_batch_size"]) == (32, 16)


def test_the_plan_follows_the_config():
    plan = plan_of("config_DGXH100_8x8x50x1.sh", BATCHSIZE="40", EVAL_OFFSET="0")
    assert plan.hyperparameters["global_batch_size"] == 2560
    assert [b.epoch_num for b in plan.schedule if b.evaluate][:2] == [1, 5]
    assert plan.schedule[0].until_step == 501  # ceil(1,281,167 / 2,560)


def test_an_epoch_is_whole_global_batches_covering_every_image():
    dataset = list(range(10))
    shards = [list(WholeEpochSampler(dataset, num_replicas=2, rank=r, seed=1, batch_size=3)) for r in range(2)]
    assert [len(s) for s in shards] == [6, 6]  # ceil(10 / 6) = 2 steps of 3 per rank
    assert set(shards[0]) | set(shards[1]) == set(dataset)
    sampler = WholeEpochSampler(dataset, num_replicas=2, rank=0, seed=1, batch_size=3)
    sampler.set_epoch(1)
    assert list(sampler) != shards[0] and len(sampler) == 6
    assert torch.utils.data.DataLoader(dataset, batch_size=3, sampler=sampler, drop_last=True).__len__() == 2
