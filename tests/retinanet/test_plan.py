"""run_plan: what a RetinaNet run logs and where it evaluates, from the config and the dataset's sizes alone."""
import re
from pathlib import Path

import pytest

from common import detection
from common.config import RuntimeConfig, SystemConfig, load_configs
from retinanet import train
from retinanet.config import RULES

BENCH = Path(__file__).resolve().parents[2] / "retinanet"


def plan_of(config: Path, **sizes):
    system, runtime, cfg = load_configs(config, SystemConfig, RuntimeConfig, train.RUN_CONFIG, environ={})
    return train.run_plan(cfg, runtime, system.nodes * system.gpus_per_node, **sizes)


# NVIDIA's values, read from its v3.0 logs NVIDIA/results/<system>/ssd/result_0.txt of
# mlcommons/training_results_v3.0 (dgxh100_ngc23.04_pytorch, dgxh100_n8_..., _n64_..., _n96_...):
# local and global batch, LR, warmup epochs, and the epochs it evaluated at (1..n, reaching the target at n).
NVIDIA = [
    ("config_DGXH100_001x08x032.sh", 32, 256, 8.5e-5, 0, 4),
    ("config_DGXH100_008x08x004.sh", 4, 256, 1e-4, 1, 4),
    ("config_DGXH100_064x08x002.sh", 2, 1024, 1e-4, 1, 6),
    ("config_DGXH100_096x08x001_newlr.sh", 1, 768, 1.3e-4, 1, 5),
]


@pytest.mark.parametrize("name, local, gbs, lr, warmup, evals", NVIDIA, ids=[n[0] for n in NVIDIA])
def test_a_dgx_config_plans_nvidias_logged_values_and_evaluations(name, local, gbs, lr, warmup, evals):
    plan = plan_of(BENCH / name)
    logged = plan.hyperparameters
    assert (logged["local_batch_size"], logged["global_batch_size"], logged["gradient_accumulation_steps"]) == \
        (local, gbs, 1)
    assert (logged["opt_name"], logged["opt_base_learning_rate"], logged["opt_learning_rate_warmup_epochs"]) == \
        ("adam", pytest.approx(lr), warmup)
    assert (logged["opt_weight_decay"], logged["opt_learning_rate_warmup_factor"]) == (0.0, 1e-3)
    assert [b.epoch_num for b in plan.schedule][:evals] == list(range(1, evals + 1))
    assert all(b.evaluate for b in plan.schedule)
    # images, not NVIDIA's ceil(images / GBS) iterations (DEVIATIONS); an epoch drops its last partial batch
    assert (plan.train_samples, plan.eval_samples, plan.samples_per_step) == (1_170_301, 24_781, gbs)
    assert plan.schedule[0].until_step == 1_170_301 // gbs
    assert plan.reached(plan.target) and not plan.reached(plan.untrained)


def test_a_changed_config_changes_the_plan(tmp_path):
    shipped = BENCH / "config_DGXH100_001x08x032.sh"
    changed = tmp_path / "config_DGXH100_001x08x016.sh"
    changed.write_text(f"source {shipped}\nexport BATCHSIZE=16\nexport NUMEPOCHS=5\nexport WARMUP_EPOCHS=1\n")
    plan = plan_of(changed)
    assert (plan.global_batch, plan.hyperparameters["opt_learning_rate_warmup_epochs"]) == (128, 1)
    assert [b.epoch_num for b in plan.schedule] == [1, 2, 3, 4, 5]
    assert plan.schedule[0].until_step == 1_170_301 // 128 != plan_of(shipped).schedule[0].until_step


def test_a_run_plans_from_the_sizes_it_measured():
    plan = plan_of(BENCH / "config_CPU_001x01x004.sh", train_images=384, eval_images=96)
    assert (plan.train_samples, plan.eval_samples, plan.schedule[0].until_step) == (384, 96, 96)
    assert plan.hyperparameters["image_size"] == 96 != RULES.image_size


@pytest.mark.parametrize("images, world, batch", [(37, 1, 4), (37, 2, 3), (40, 3, 2), (24_781, 8, 32)])
def test_steps_per_epoch_is_the_training_loaders_length_on_every_rank(images, world, batch):
    dataset = detection.Records(list(range(images)))
    lengths = {len(detection.loaders(dataset, dataset, batch_size=batch, eval_batch_size=1, num_workers=0,
                                     rank=rank, world_size=world, seed=0)[0]) for rank in range(world)}
    assert lengths == {detection.steps_per_epoch(images, world * batch)}


def test_every_deviation_is_a_row_of_the_readmes_section():
    readme = (BENCH / "README.md").read_text()
    section = readme.split("### Deviations from NVIDIA's v3.0 logs", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", section, re.M)}
    assert rows == set(train.DEVIATIONS)


def test_a_loader_that_disagrees_with_the_plan_stops_the_run():
    dataset = detection.Records(list(range(40)))
    train_loader, _ = detection.loaders(dataset, dataset, batch_size=4, eval_batch_size=1, num_workers=0, rank=0,
                                        world_size=1, seed=0)
    assert detection.checked_steps_per_epoch(train_loader, 40, 4) == 10
    with pytest.raises(RuntimeError, match="the train loader has 10 steps per epoch, the plan 13"):
        detection.checked_steps_per_epoch(train_loader, 40, 3)
