"""Run rules wired into the training code: evaluation cadence, batch split, configs, logged keys."""
import ast

import pytest
import yaml

from common.config import ConfigError, SystemConfig, load_configs
from compliance.check import rules_file
from dlrm_dcnv2.config import RULES, DlrmRunConfig
from dlrm_dcnv2.train import BENCH_DIR, eval_steps


def test_twenty_evaluations_per_epoch_the_last_at_its_end():
    steps = eval_steps(184)
    assert len(steps) == 20 and steps[:3] == [9, 18, 27] and steps[-1] == 184
    assert eval_steps(75_871)[0] == 3_793  # 1x DGX H100: 4,195,197,692 // 55,296 steps
    with pytest.raises(ValueError, match="cannot hold 20 evaluations"):
        eval_steps(19)


def test_global_batch_must_split_over_the_processes():
    cfg = DlrmRunConfig(global_batch=55_296, eval_batch=262_144, lr=0.004)
    assert cfg.local_batch(8) == 6_912
    with pytest.raises(ValueError, match="does not split over 7 processes"):
        cfg.local_batch(7)


@pytest.mark.parametrize("name, gbs, eval_batch, lr, nodes", [
    ("DGXH100_1x8x6912", 55_296, 262_144, 0.004, 1),
    ("DGXH100_8x8x2112", 135_168, 1_048_576, 0.0034, 8),
    ("DGXH100_16x8x1056", 135_168, 2_097_152, 0.0034, 16),
])
def test_nvidia_configs_load_with_their_published_values(name, gbs, eval_batch, lr, nodes):
    system, cfg = load_configs(BENCH_DIR / f"config_{name}.sh", SystemConfig, DlrmRunConfig, environ={})
    assert (system.system, system.nodes, system.gpus_per_node) == (name, nodes, 8)
    assert (cfg.global_batch, cfg.eval_batch, cfg.lr, cfg.model_size) == (gbs, eval_batch, lr, "full")
    assert cfg.local_batch(nodes * 8) == int(name.split("x")[-1])  # the file name states the local batch


def test_a_config_knob_this_implementation_lacks_is_rejected(tmp_path):
    config = tmp_path / "config_X.sh"
    config.write_text((BENCH_DIR / "config_CPU_1x1x2048.sh").read_text() + "export SCALER=16348\n")
    with pytest.raises(ConfigError, match="unknown variable.*SCALER"):
        load_configs(config, SystemConfig, DlrmRunConfig, environ={})


def logged_keys() -> set[str]:
    """Keys the training code logs: constants.X names and string keys in train.py."""
    from mlperf_logging.mllog import constants

    tree = ast.parse((BENCH_DIR / "train.py").read_text())
    keys = {getattr(constants, node.attr) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "constants"}
    return keys | {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                   and isinstance(node.value, str)}


def test_every_key_of_closed_dlrm_dcnv2_yaml_is_logged():
    rules = yaml.safe_load(rules_file("closed_dlrm_dcnv2.yaml").read_text())
    required = {entry["KEY"]["NAME"] for entry in rules}
    assert "opt_adagrad_epsilon" in required and "eval_samples" in required
    assert required - logged_keys() == {"eval_accuracy"}  # logged by common.harness.train_to_target
    assert RULES.eval_samples == 89_137_319 and RULES.target_auc == 0.80275
