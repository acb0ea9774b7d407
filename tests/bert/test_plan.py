"""`train.run_plan`: what a run of a shipped config logs, against the values in NVIDIA's v3.0 BERT logs."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bert.config import RULES, BertRunConfig
from bert.optim import build_lamb
from bert.train import run_plan
from common.config import RuntimeConfig, SystemConfig, load_configs

BERT_DIR = Path(__file__).resolve().parents[2] / "bert"


def plan_of(config: str, **environ: str):
    system, runtime, cfg = load_configs(BERT_DIR / config, SystemConfig, RuntimeConfig, BertRunConfig,
                                        environ=environ)
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node)


def eval_steps(plan) -> list[int]:
    return [block.until_step for block in plan.schedule if block.evaluate]


def test_the_1_node_packed_config_logs_what_nvidias_1_node_log_has():
    plan = plan_of("config_DGXH100_1x8x48x1_pack.sh")
    # NVIDIA/results/dgxh100_ngc23.04_pytorch/bert/result_0.txt
    nvidia = {"global_batch_size": 768, "d_batch_size": 48, "gradient_accumulation_steps": 1,
              "max_predictions_per_seq": 76, "opt_learning_rate_training_steps": 3680, "num_warmup_steps": 0,
              "opt_base_learning_rate": 0.00096, "opt_lamb_epsilon": 1e-06, "opt_epsilon": 1e-06,
              "opt_lamb_beta_1": 0.60466, "opt_lamb_beta_2": 0.85437, "opt_lamb_weight_decay_rate": 0.1,
              "opt_learning_rate_warmup_steps": 0, "opt_lamb_learning_rate_decay_poly_power": 1.0,
              "start_warmup_step": 0}
    assert {key: plan.hyperparameters[key] for key in nvidia} == nvidia
    assert plan.eval_samples == 10_000 and plan.train_samples is None  # measured, logged at the end
    # its evaluations follow steps 196, 391, 586 (150,369, 300,014 and 449,751 packed sequences measured)
    assert eval_steps(plan)[:3] == [196, 391, 586]
    assert plan.samples_per_step == plan.global_batch == 768


def test_the_unpacked_8_node_config_evaluates_at_nvidias_epoch_nums():
    plan = plan_of("config_DGXH100_8x8x72x1.sh")
    # NVIDIA/results/dgxh100_n8_ngc23.04_pytorch/bert/result_0.txt: unpacked rows, so epoch_num is nominal
    assert [block.epoch_num for block in plan.schedule[:3]] == [200_000, 400_000, 600_000]
    assert [step * plan.samples_per_step for step in eval_steps(plan)[:3]] == [202_752, 400_896, 603_648]
    nvidia = {"global_batch_size": 4608, "d_batch_size": 72, "opt_learning_rate_training_steps": 700,
              "num_warmup_steps": 200330, "start_warmup_step": -200000, "opt_base_learning_rate": 0.00258}
    assert {key: plan.hyperparameters[key] for key in nvidia} == nvidia


def test_the_logged_epsilon_is_the_one_lamb_steps_with():
    plan = plan_of("config_DGXH100_64x8x3x1_pack.sh")
    optimizer = build_lamb(nn.Linear(4, 4), lr=0.002, betas=(0.62, 0.9), weight_decay=0.01, fused=False,
                           device=torch.device("cpu"))
    assert optimizer.defaults["eps"] == plan.hyperparameters["opt_epsilon"] == RULES.lamb_epsilon
    assert plan.hyperparameters["opt_lamb_epsilon"] == RULES.lamb_epsilon


def test_a_changed_config_value_changes_the_plan():
    base, half = plan_of("config_DGXH100_1x8x48x1_pack.sh"), plan_of("config_DGXH100_1x8x48x1_pack.sh",
                                                                         BATCHSIZE="24")
    assert (half.global_batch, half.hyperparameters["d_batch_size"]) == (384, 24)
    assert eval_steps(half)[0] == 391 != eval_steps(base)[0]  # ceil(150,000 / 384)
    sooner = plan_of("config_DGXH100_1x8x48x1_pack.sh", EVAL_ITER_SAMPLES="100000")
    assert eval_steps(sooner)[0] == 131 and sooner.hyperparameters["eval_interval_samples"] == 100_000


def test_the_plan_reaches_the_target_only_at_0_720():
    plan = plan_of("config_CPU_1x1x32x1_pack.sh")
    assert plan.reached(plan.target) and not plan.reached(plan.untrained)
    assert not plan.reached(0.7199)
    assert plan.hyperparameters["max_predictions_per_seq"] != 76  # MODEL_SIZE=debug: the tiny model's
    assert plan.eval_samples == 10_000  # the real eval set's, unless main() passes what it opened
    with pytest.raises(ValueError, match="less often than the rules"):
        plan_of("config_DGXH100_1x8x48x1_pack.sh", EVAL_ITER_SAMPLES="175000")
