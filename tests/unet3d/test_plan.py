"""The 3D U-Net's run plan (what a run logs and where it evaluates) against NVIDIA's v3.0 logs."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from unet3d.config import UNet3DConfig
from unet3d.train import run_plan

BENCH = Path(__file__).resolve().parents[2] / "unet3d"


def plan_of(name: str, **env):
    system, runtime, cfg = load_configs(BENCH / name, SystemConfig, RuntimeConfig, UNet3DConfig, environ=env)
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node)


def evaluated_epochs(plan) -> list:
    return [b.epoch_num for b in plan.schedule if b.evaluate]


def test_1_node_plan_is_nvidias():
    # NVIDIA/results/dgxh100_ngc23.04_mxnet/unet3d/result_00.txt: global batch 56, samples_per_epoch 168,
    # train_samples 168, eval_samples 42, nag at LR 2.0 warmed up over 1000 epochs, evaluations at epochs 1000,
    # 1020, ..., 1500 (the target there)
    plan = plan_of("config_DGXH100_1x8x7.sh")
    h = plan.hyperparameters
    assert (h["global_batch_size"], h["samples_per_epoch"], h["opt_name"], h["opt_base_learning_rate"],
            h["opt_learning_rate_warmup_epochs"]) == (56, 168, "nag", 2.0, 1000)
    assert (plan.train_samples, plan.eval_samples) == (168, 42)
    assert evaluated_epochs(plan)[:26] == list(range(1000, 1501, 20))
    assert evaluated_epochs(plan)[-1] == 10000  # MAX_EPOCHS
    assert plan.schedule[0].until_step == 20 * 3  # blocks of 20 epochs of 168 / 56 steps before the first evaluation


def test_the_run_ends_at_the_target_and_gives_up_on_a_collapsed_model():
    plan = plan_of("config_DGXH100_1x8x7.sh")
    assert plan.reached(plan.target) and not plan.reached(plan.untrained) and not plan.reached(0.9079)
    assert plan.diverged(0.0) and not plan.diverged(plan.untrained) and not plan.diverged(1e-6)


def test_the_plan_follows_the_config():
    # 1 x 8 x 10 = 80 of the 168 cases a step: 2 steps, 160 samples an epoch; the rules' cadence (0) scales up
    plan = plan_of("config_DGXH100_1x8x7.sh", BATCH_SIZE="10", START_EVAL_AT="0", EVALUATE_EVERY="0")
    assert (plan.global_batch, plan.hyperparameters["samples_per_epoch"]) == (80, 160)
    assert evaluated_epochs(plan)[:2] == [1050, 1071]  # ceil(1000 x 168 / 160), then every ceil(20 x 168 / 160)
    assert plan.schedule[0].until_step == 21 * 2


def test_a_global_batch_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match="BATCH_SIZE: 22 x 8 processes is more than the 168 training cases"):
        plan_of("config_DGXH100_1x8x7.sh", BATCH_SIZE="22")
