"""The solver: NVIDIA's mlperf_linear warmup, x0.1 steps, bias groups, the configs and the logged keys."""
import math
from pathlib import Path

import pytest
import torch
import yaml

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from common.step import set_lr
from maskrcnn.config import MaskRCNNConfig
from maskrcnn.model import MaskRCNNShape, build_maskrcnn
from maskrcnn.train import both_targets, hyperparameters, optimizer_groups, warmup_multistep_lr
from tests.common.test_harness import run_toy
from common import schedule

BENCH = Path(__file__).resolve().parents[2] / "maskrcnn"


def configs(name: str) -> tuple:
    return load_configs(BENCH / name, SystemConfig, RuntimeConfig, MaskRCNNConfig, environ={})


def nvidia_1x8() -> MaskRCNNConfig:
    return configs("config_DGXH100_001x08x012.sh")[2]


def test_mlperf_linear_warmup_rises_from_zero_then_steps_down_by_ten_twice():
    cfg = nvidia_1x8()
    lr = warmup_multistep_lr(cfg)
    assert lr(0) == pytest.approx(0.0, abs=1e-12)  # 0.12 - 625 x 0.000192
    assert lr(312) == pytest.approx(0.12 - 313 * 0.000192)
    assert lr(625) == lr(11_999) == pytest.approx(0.12)
    assert lr(12_000) == pytest.approx(0.012) and lr(16_000) == pytest.approx(0.0012)
    assert all(lr(i) <= lr(i + 1) for i in range(625))


def test_biases_train_at_twice_the_rate_without_weight_decay():
    model = build_maskrcnn(MaskRCNNShape.debug(), min_size=64, max_size=96)
    groups = optimizer_groups(model)
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    set_lr(optimizer, 0.05)
    weights, biases = optimizer.param_groups
    assert (weights["lr"], weights["weight_decay"]) == (0.05, 1e-4)
    assert (biases["lr"], biases["weight_decay"]) == (0.1, 0.0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(weights["params"]) + len(biases["params"]) == len(trainable)


@pytest.mark.parametrize("name, gbs, lr, candidates", [
    ("config_DGXH100_001x08x012.sh", 96, 0.12, 12000), ("config_DGXH100_008x08x004.sh", 256, 0.24, 1000),
    ("config_DGXH100_032x08x001_oldhp.sh", 256, 0.24, 1000), ("config_CPU_001x01x004.sh", 4, None, None)])
def test_every_config_loads_and_its_name_is_its_shape(name, gbs, lr, candidates):
    system, runtime, cfg = configs(name)
    nodes, gpus, batch = (int(v) for v in name.removesuffix(".sh").split("_")[2].split("x"))
    assert (system.nodes, system.gpus_per_node, cfg.batch_size) == (nodes, gpus, batch)
    assert nodes * gpus * batch == gbs
    if lr is not None:
        assert (cfg.base_lr, cfg.num_image_candidates, runtime.precision) == (lr, candidates, "bf16")
        assert cfg.base_lr - cfg.warmup_iters * cfg.warmup_factor == pytest.approx(0.0, abs=2e-3)
    assert math.isclose(cfg.base_lr / 0.02, round(cfg.base_lr / 0.02)) or \
        (gbs < 16 and math.isclose(0.02 / cfg.base_lr, round(0.02 / cfg.base_lr)))  # the rules' LR grid


def test_every_key_the_closed_ruleset_checks_is_logged():
    import mlperf_logging
    rules = Path(mlperf_logging.__file__).parent / "compliance_checker" / "training_3.0.0" / "closed_maskrcnn.yaml"
    checked = {entry["KEY"]["NAME"] for entry in yaml.safe_load(rules.read_text())}
    logged = hyperparameters(nvidia_1x8(), 96)
    assert checked - set(logged) == {"eval_accuracy"}
    assert logged["opt_learning_rate_decay_steps"] == [12000, 16000]
    assert logged["num_image_candidates"] == 12000


def test_steps_must_be_two_increasing_iterations(tmp_path):
    config = tmp_path / "config_BAD.sh"
    text = (BENCH / "config_CPU_001x01x004.sh").read_text().replace("STEPS=800,900", "STEPS=900")
    config.write_text(text)
    with pytest.raises((ConfigError, ValueError), match="STEPS='900'"):
        load_configs(config, SystemConfig, RuntimeConfig, MaskRCNNConfig, environ={})


def test_success_needs_both_targets_at_one_evaluation(tmp_path):
    assert not both_targets({"BBOX": 0.40, "SEGM": 0.33}) and not both_targets({"BBOX": 0.37, "SEGM": 0.40})
    log = run_toy(tmp_path, [{"BBOX": 0.40, "SEGM": 0.30}, {"BBOX": 0.30, "SEGM": 0.40},
                             {"BBOX": 0.377, "SEGM": 0.339}], reached=both_targets,
                  blocks=schedule.every_n_epochs(4, 2))
    accuracy = [e["value"] for e in log if e["key"] == "eval_accuracy"]
    assert len(accuracy) == 3 and log[-1]["metadata"]["status"] == "success"
    aborted = run_toy(tmp_path, [{"BBOX": 0.40, "SEGM": 0.30}, {"BBOX": 0.30, "SEGM": 0.40}],
                      reached=both_targets, blocks=schedule.every_n_epochs(2, 2))
    assert aborted[-1]["metadata"]["status"] == "aborted"
