"""DLRM-DCNv2's run plan (what a run logs and where it evaluates) against NVIDIA's v3.0 HugeCTR logs."""
from __future__ import annotations

import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from dlrm_dcnv2.config import RULES, DlrmRunConfig
from dlrm_dcnv2.train import BENCH_DIR, run_plan

# Every v3.0 DLRM-DCNv2 log of NVIDIA's logs these, whatever its node count (closed_dlrm_dcnv2.yaml fixes them).
FIXED = {"opt_name": "adagrad", "opt_adagrad_learning_rate_decay": 0, "opt_weight_decay": 0,
         "opt_adagrad_initial_accumulator_value": 0.0, "opt_adagrad_epsilon": 1e-08,
         "opt_learning_rate_warmup_steps": 0, "opt_learning_rate_decay_start_step": 0,
         "opt_learning_rate_decay_steps": 0, "gradient_accumulation_steps": 1}


def plan_of(name: str, **env):
    system, runtime, cfg = load_configs(BENCH_DIR / name, SystemConfig, RuntimeConfig, DlrmRunConfig, environ=env)
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node)


def evaluations(plan) -> list[tuple[int, float]]:
    return [(b.until_step, b.epoch_num) for b in plan.schedule if b.evaluate]


def test_16_nodes_plan_is_nvidias_to_the_20th_evaluation():
    # NVIDIA/results/dgxh100_n16_ngc23.04_merlin_hugectr/dlrm_dcnv2/result_0.txt: global batch 135168, LR 0.0034,
    # train_samples 4195197692, eval_samples 89137319; 20 evaluations, epoch_num 0.0499403937236202,
    # 0.09991300705609434, ..., 0.9994200470406289 (HugeCTR: after steps 1551, 3102, ..., 31020 of 31037)
    plan = plan_of("config_DGXH100_16x8x1056.sh")
    assert {key: plan.hyperparameters[key] for key in FIXED} == FIXED
    assert (plan.global_batch, plan.hyperparameters["opt_base_learning_rate"]) == (135_168, 0.0034)
    assert (plan.train_samples, plan.eval_samples, plan.samples_per_step) == (4_195_197_692, 89_137_319, 135_168)
    points = evaluations(plan)
    assert len(points) == 20 and len(plan.schedule) == 20
    assert points[:2] == [(1551, 0.0499403937236202), (3102, 0.09991300705609434)]
    assert points[-1] == (31_020, 0.9994200470406289)  # not the end of the epoch (31,036 full batches)


def test_1_node_plan_is_nvidias():
    # NVIDIA/results/dgxh100_ngc23.04_merlin_hugectr/dlrm_dcnv2/result_0.txt: global batch 55296, LR 0.004;
    # epoch_num 0.049980888109768154, 0.09997495683348931, ..., 0.7498978502418643 (its 15th and last)
    plan = plan_of("config_DGXH100_1x8x6912.sh")
    assert (plan.global_batch, plan.hyperparameters["opt_base_learning_rate"]) == (55_296, 0.004)
    points = evaluations(plan)
    assert points[:2] == [(3793, 0.049980888109768154), (7586, 0.09997495683348931)]
    assert points[14] == (56_895, 0.7498978502418643) and points[-1][0] == 75_860


def test_the_plan_follows_the_config_and_the_dataset():
    plan = plan_of("config_DGXH100_1x8x6912.sh", BATCHSIZE="65536", LEARNING_RATE="0.005")
    assert (plan.global_batch, plan.hyperparameters["opt_base_learning_rate"]) == (65_536, 0.005)
    assert evaluations(plan)[0] == (3200, 3199 / 64_014)  # 4,195,197,692 / 65,536 = 64,013.6
    system, runtime, cfg = load_configs(BENCH_DIR / "config_CPU_1x1x2048.sh", SystemConfig, RuntimeConfig,
                                        DlrmRunConfig, environ={})
    synthetic = run_plan(cfg, runtime, 1, train_samples=23 * 16_384, eval_samples=65_536)
    assert (synthetic.train_samples, synthetic.eval_samples) == (376_832, 65_536)
    assert evaluations(synthetic)[0] == (9, 8 / 184) and synthetic.schedule[-1].until_step == 180


def test_the_target_and_a_batch_that_does_not_split():
    plan = plan_of("config_DGXH100_8x8x2112.sh")
    assert plan.reached(plan.target) and plan.target == RULES.target_auc and not plan.reached(plan.untrained)
    system, runtime, cfg = load_configs(BENCH_DIR / "config_DGXH100_8x8x2112.sh", SystemConfig, RuntimeConfig,
                                        DlrmRunConfig, environ={})
    with pytest.raises(ConfigError, match="does not split over 40 processes"):
        run_plan(cfg, runtime, 40)
