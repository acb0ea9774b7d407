"""`train.run_plan`: what a run of a shipped config logs, against the values in NVIDIA's v3.0 GPT-3 logs."""
from pathlib import Path

import torch

from common.config import RuntimeConfig, SystemConfig, load_configs
from gpt3.config import RULES, GPTRunConfig
from gpt3.train import run_plan, trained_tokens

GPT3_DIR = Path(__file__).resolve().parents[2] / "gpt3"


def plan_of(config: str, **environ: str):
    system, runtime, cfg = load_configs(GPT3_DIR / config, SystemConfig, RuntimeConfig, GPTRunConfig,
                                        environ=environ)
    return run_plan(cfg, runtime, system.nodes * system.gpus_per_node)


def eval_epoch_nums(plan) -> list[int]:
    return [block.epoch_num for block in plan.schedule if block.evaluate]


def test_the_64_node_config_logs_what_nvidias_64_node_log_has():
    plan = plan_of("config_DGXH100_64x8x128x4x8_mbs1.sh")
    # NVIDIA/results/dgxh100_n64_nemo/gpt3/result_0.txt
    nvidia = {"global_batch_size": 2048, "gradient_accumulation_steps": 128, "max_sequence_length": 2048,
              "opt_name": "adam", "opt_base_learning_rate": 2e-05, "opt_learning_rate_decay_steps": 81450,
              "opt_learning_rate_warmup_steps": 198, "init_checkpoint_step": 3000, "opt_weight_decay": 0.1,
              "opt_adam_beta_1": 0.9, "opt_adam_beta_2": 0.95, "opt_adam_epsilon": 1e-08,
              "opt_gradient_clip_norm": 1.0, "opt_learning_rate_decay_schedule": "cosine with linear warmup"}
    assert {key: plan.hyperparameters[key] for key in nvidia} == nvidia
    assert abs(plan.hyperparameters["opt_end_learning_rate"] - 2e-06) < 1e-18
    assert plan.eval_samples == 11_590_004  # tokens, in every NVIDIA v3.0 GPT-3 log
    # evaluations every 12 steps, epoch_num in tokens: 50,331,648 = 12 x 2048 x 2048 at the first; the run
    # reached the target at its 24th, where it logged train_samples 1,207,959,552 (tokens trained)
    assert eval_epoch_nums(plan)[:2] == [50_331_648, 100_663_296]
    assert eval_epoch_nums(plan)[23] == 1_207_959_552
    assert plan.train_samples is None and plan.samples_per_step == 2048 * 2048  # measured, in tokens


def test_the_96_node_config_logs_what_nvidias_96_node_log_has():
    plan = plan_of("config_DGXH100_96x8x128x4x8_mbs1.sh")
    # NVIDIA/results/dgxh100_n96_nemo/gpt3/result_0.txt
    nvidia = {"global_batch_size": 3072, "opt_learning_rate_decay_steps": 54300,
              "opt_learning_rate_warmup_steps": 132, "init_checkpoint_step": 2000, "opt_base_learning_rate": 2e-05}
    assert {key: plan.hyperparameters[key] for key in nvidia} == nvidia
    assert plan.eval_samples == 11_590_004
    assert eval_epoch_nums(plan)[0] == 50_331_648  # 8 steps x 3072 x 2048
    assert plan.schedule[0].until_step == 8


def test_a_changed_config_value_changes_the_plan():
    plan = plan_of("config_DGXH100_64x8x128x4x8_mbs1.sh", MINIBS="96")
    assert plan.global_batch == 1536
    assert (plan.hyperparameters["opt_learning_rate_decay_steps"], plan.hyperparameters["init_checkpoint_step"],
            plan.hyperparameters["opt_learning_rate_warmup_steps"]) == (108_600, 4000, 265)  # the reference's
    sooner = plan_of("config_DGXH100_64x8x128x4x8_mbs1.sh", EVAL_EVERY_SAMPLES="12288")
    assert eval_epoch_nums(sooner)[0] == 6 * 2048 * 2048


def test_eval_samples_are_the_validation_tokens_main_measured():
    system, runtime, cfg = load_configs(GPT3_DIR / "config_CPU_1x1x4x1x1.sh", SystemConfig, RuntimeConfig,
                                        GPTRunConfig, environ={})
    assert run_plan(cfg, runtime, 1).eval_samples == RULES.eval_tokens
    plan = run_plan(cfg, runtime, 1, eval_tokens=81_234)
    assert plan.eval_samples == 81_234 and plan.samples_per_step == 4 * 2048
    assert plan.reached(plan.target) and not plan.reached(plan.untrained)


def test_a_batch_trains_its_target_tokens():
    assert trained_tokens(torch.zeros(3, 2049, dtype=torch.long)) == 3 * 2048
