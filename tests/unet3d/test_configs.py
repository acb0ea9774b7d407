"""The unet3d configs: NVIDIA's published shapes and hyperparameters, the rules' cadence scaling, the LR rule."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from tests.conftest import REPO, UNET3D_CPU_CONFIG, config_env
from unet3d.config import UNet3DConfig
from unet3d.train import learning_rate

BENCH = Path(__file__).resolve().parents[2] / "unet3d"
CONFIGS = sorted(p for p in BENCH.glob("config_*.sh") if not p.name.endswith("_common.sh"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_its_name_states_the_run_shape(path):
    system, _, cfg = load_configs(path, SystemConfig, RuntimeConfig, UNet3DConfig, environ={})
    nodes, gpus, batch = map(int, re.search(r"_(\d+)x(\d+)x(\d+)\.sh$", path.name).groups())
    assert (system.nodes, system.gpus_per_node, cfg.batch_size) == (nodes, gpus, batch)
    assert system.system == path.stem.removeprefix("config_")


@pytest.mark.parametrize("name, val_batch", [("config_DGXH100_1x8x7.sh", 4), ("config_DGXH100_7x8x1.sh", 7)])
def test_dgx_configs_have_nvidias_published_hyperparameters(name, val_batch):
    system, runtime, cfg = load_configs(BENCH / name, SystemConfig, RuntimeConfig, UNet3DConfig, environ={})
    assert system.nodes * system.gpus_per_node * cfg.batch_size == 56  # NVIDIA's logged global_batch_size
    assert (cfg.optimizer, cfg.lr, cfg.init_lr, cfg.warmup_epochs, cfg.momentum, cfg.weight_decay) == \
        ("nag", 2.0, 1e-4, 1000, 0.9, 0.0)
    assert (cfg.start_eval_at, cfg.evaluate_every, cfg.max_epochs, cfg.input_shape, cfg.val_batch_size) == \
        (1000, 20, 10000, 128, val_batch)
    assert (cfg.decay_boundaries, cfg.decay_factor, runtime.precision) == ([], 1.0, "bf16")


def test_the_rules_cadence_scales_with_the_epoch_when_the_config_leaves_it_open():
    cfg = UNet3DConfig(batch_size=1, lr=1.0, warmup_epochs=0, max_epochs=100)
    assert cfg.eval_cadence(168) == (1000, 20)
    assert cfg.eval_cadence(144) == (1167, 24)  # 72 GPUs x 1 with the last batch dropped: ceil(x 168 / 144)
    assert UNet3DConfig(batch_size=1, lr=1.0, warmup_epochs=0, max_epochs=100, start_eval_at=5,
                        evaluate_every=2).eval_cadence(144) == (5, 2)


def test_warmup_is_linear_per_step_and_decay_boundaries_multiply():
    cfg = UNet3DConfig(batch_size=7, lr=2.0, warmup_epochs=10, max_epochs=100, decay_epochs="20 30",
                       decay_factor=0.5)
    lr = learning_rate(cfg, steps_per_epoch=3)
    assert lr(0) == pytest.approx(1e-4) and lr(15) == pytest.approx(1e-4 + (2.0 - 1e-4) * 0.5)
    assert [lr(29), lr(30), lr(59), lr(60), lr(90)] == [pytest.approx(v) for v in (2.0 - (2.0 - 1e-4) / 30, 2.0,
                                                                                   2.0, 1.0, 0.5)]


def test_bad_values_are_refused_naming_the_variable(tmp_path):
    config = tmp_path / "config_X.sh"
    config.write_text(UNET3D_CPU_CONFIG.read_text() + "export LR_DECAY_EPOCHS='30 20'\n")
    with pytest.raises(ConfigError, match="LR_DECAY_EPOCHS='30 20' must rise"):
        load_configs(config, SystemConfig, RuntimeConfig, UNet3DConfig, environ={})
    config.write_text(UNET3D_CPU_CONFIG.read_text() + "export QUALITY_THRESHOLD=0.9\n")  # a rule, not a knob
    with pytest.raises(ConfigError, match="exports unknown variable\\(s\\) QUALITY_THRESHOLD"):
        load_configs(config, SystemConfig, RuntimeConfig, UNet3DConfig, environ={})


def test_a_patch_the_model_cannot_take_and_an_empty_data_dir_are_named(tmp_path):
    run = [sys.executable, "-m", "unet3d.train", "--data-dir", str(tmp_path), "--seed", "1"]
    proc = subprocess.run(run, cwd=REPO, env=config_env(UNET3D_CPU_CONFIG, INPUT_SHAPE="20"), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "INPUT_SHAPE: 20 must be a multiple of 8 and at least 16 for the debug model" in proc.stdout + proc.stderr
    proc = subprocess.run(run, cwd=REPO, env=config_env(UNET3D_CPU_CONFIG), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert f"{tmp_path}: no case_XXXXX_x.npy files" in proc.stdout + proc.stderr
    assert '"status": "aborted"' not in proc.stdout  # nothing was timed yet: no run_stop at all
