"""run_plan: what a Mask R-CNN run logs and where it evaluates, from the config and the dataset's sizes alone."""
import re
from pathlib import Path

import pytest

from common.config import RuntimeConfig, SystemConfig, load_configs
from maskrcnn import train

BENCH = Path(__file__).resolve().parents[2] / "maskrcnn"


def plan_of(config: Path, **sizes):
    system, runtime, cfg = load_configs(config, SystemConfig, RuntimeConfig, train.RUN_CONFIG, environ={})
    return train.run_plan(cfg, runtime, system.nodes * system.gpus_per_node, **sizes)


# NVIDIA's values, read from its v3.0 logs NVIDIA/results/{dgxh100_ngc23.04_pytorch,dgxh100_n8_ngc23.04_pytorch}/
# maskrcnn/result_0.txt of mlcommons/training_results_v3.0: d_batch_size, global batch, LR, warmup steps and factor,
# decay steps, num_image_candidates, and the evaluations of a run that never converged (every epoch up to
# SOLVER_MAX_ITER: 32 at 1 node in result_2.txt, 43 at 8 nodes in result_0.txt, both aborted).
NVIDIA = [
    ("config_DGXH100_001x08x012.sh", 12, 96, 0.12, 625, 0.000192, [12000, 16000], 12000, 32),
    ("config_DGXH100_008x08x004.sh", 4, 256, 0.24, 2300, 0.00010434782608695653, [6125, 8000], 1000, 43),
]


@pytest.mark.parametrize("name, local, gbs, lr, warmup, factor, decay, candidates, evals", NVIDIA,
                         ids=[n[0] for n in NVIDIA])
def test_a_dgx_config_plans_nvidias_logged_values_and_evaluations(name, local, gbs, lr, warmup, factor, decay,
                                                                  candidates, evals):
    plan = plan_of(BENCH / name)
    logged = plan.hyperparameters
    assert (logged["d_batch_size"], logged["global_batch_size"], logged["gradient_accumulation_steps"]) == \
        (local, gbs, 1)
    assert (logged["opt_name"], logged["opt_base_learning_rate"], logged["opt_learning_rate_warmup_steps"]) == \
        ("sgd_with_momentum", lr, warmup)
    assert logged["opt_learning_rate_warmup_factor"] == pytest.approx(factor, rel=1e-12)
    assert (logged["opt_learning_rate_decay_factor"], logged["opt_learning_rate_decay_steps"]) == (0.1, decay)
    assert (logged["num_image_candidates"], logged["min_image_size"], logged["max_image_size"]) == \
        (candidates, 800, 1333)
    assert [b.epoch_num for b in plan.schedule] == list(range(1, evals + 1))  # and gives up where NVIDIA's does
    # images, not NVIDIA's SOLVER_MAX_ITER and 1 (DEVIATIONS); an epoch drops its last partial batch
    assert (plan.train_samples, plan.eval_samples, plan.samples_per_step) == (117_266, 5_000, gbs)
    assert plan.schedule[0].until_step == 117_266 // gbs
    assert plan.reached(plan.target) and not plan.reached(plan.untrained)


def test_a_changed_config_changes_the_plan(tmp_path):
    shipped = BENCH / "config_DGXH100_001x08x012.sh"
    changed = tmp_path / "config_DGXH100_001x08x008.sh"
    changed.write_text(f"source {shipped}\nexport BATCHSIZE=8\nexport NUMEPOCHS=20\nexport STEPS=18000,24000\n")
    plan = plan_of(changed)
    assert (plan.global_batch, plan.hyperparameters["opt_learning_rate_decay_steps"]) == (64, [18000, 24000])
    assert len(plan.schedule) == 20 != len(plan_of(shipped).schedule)
    assert plan.schedule[0].until_step == 117_266 // 64


def test_the_target_needs_both_metrics():
    plan = plan_of(BENCH / "config_CPU_001x01x004.sh", train_images=191, eval_images=32)
    assert (plan.train_samples, plan.eval_samples, plan.schedule[0].until_step) == (191, 32, 47)
    assert not plan.reached({**plan.target, "SEGM": 0.338}) and not plan.reached({**plan.target, "BBOX": 0.376})


def test_every_deviation_is_a_row_of_the_readmes_section():
    readme = (BENCH / "README.md").read_text()
    section = readme.split("### Deviations from NVIDIA's v3.0 logs", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", section, re.M)}
    assert rows == set(train.DEVIATIONS)
