"""RNN-T's run plan (what a run logs and where it evaluates) against NVIDIA's v3.0 logs."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from rnnt.config import RNNTConfig
from rnnt.data import EpochBatches
from rnnt.train import run_plan

BENCH = Path(__file__).resolve().parents[2] / "rnnt"


def plan_of(name: str, train_utterances: int | None = None, **env):
    system, runtime, cfg = load_configs(BENCH / name, SystemConfig, RuntimeConfig, RNNTConfig, environ=env)
    sizes = {} if train_utterances is None else {"train_utterances": train_utterances}
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node, **sizes)


def evaluated_epochs(plan) -> list:
    return [b.epoch_num for b in plan.schedule if b.evaluate]


@pytest.mark.parametrize("name, global_batch, train_samples, lr, epochs", [
    # NVIDIA/results/dgxh100_ngc23.04_pytorch/rnnt/result_0.txt
    ("config_DGXH100_1x8x192x1.sh", 1536, 278016, 0.0072, 80),
    # NVIDIA/results/dgxh100_n8_ngc23.04_pytorch/rnnt/result_0.txt
    ("config_DGXH100_8x8x32x1.sh", 2048, 278528, 0.007, 80),
    # NVIDIA/results/dgxh100_n64_ngc23.04_pytorch/rnnt/result_0.txt
    ("config_DGXH100_64x8x8x1.sh", 4096, 278528, 0.013, 100),
])
def test_dgx_plans_are_nvidias(name, global_batch, train_samples, lr, epochs):
    plan = plan_of(name)
    h = plan.hyperparameters
    assert (h["global_batch_size"], h["opt_base_learning_rate"], h["gradient_accumulation_steps"]) == \
        (global_batch, lr, 1)
    assert (plan.train_samples, plan.eval_samples) == (train_samples, 2703)
    assert evaluated_epochs(plan) == list(range(1, epochs + 1))  # every epoch
    assert plan.schedule[0].until_step == train_samples // global_batch  # 181, 136 and 68 steps an epoch


def test_every_utterance_count_nvidias_logs_allow_gives_the_same_dgx_plans():
    for name in ("config_DGXH100_1x8x192x1.sh", "config_DGXH100_8x8x32x1.sh", "config_DGXH100_64x8x8x1.sh"):
        low, high = plan_of(name, 278_528), plan_of(name, 278_783)
        assert (low.train_samples, low.schedule) == (high.train_samples, high.schedule)


def test_the_plan_follows_the_config_and_the_sampler():
    plan = plan_of("config_DGXH100_1x8x192x1.sh", 2048, BATCHSIZE="100", GRAD_ACCUMULATION_STEPS="2")
    assert (plan.global_batch, plan.samples_per_step) == (1600, 1600)
    assert plan.train_samples == 2 * 800  # 2,048 utterances: 2 micro-batches of 8 x 100
    assert plan.schedule[0].until_step == 1
    sampler = EpochBatches([1.0] * 2048, 100, 8, 0, seed=1)
    assert sampler.samples_per_epoch == plan.train_samples and len(sampler) // 2 == plan.schedule[0].until_step
    assert plan.reached(plan.target) and not plan.reached(plan.untrained) and not plan.reached(0.0)


def test_a_step_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match="BATCHSIZE: 192 x 8 processes x 2 accumulation steps is more than"):
        plan_of("config_DGXH100_1x8x192x1.sh", 2048, GRAD_ACCUMULATION_STEPS="2")
