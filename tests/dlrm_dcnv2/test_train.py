"""Run rules wired into the configs: the batch split and NVIDIA's published values."""
import pytest

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from dlrm_dcnv2.config import DlrmRunConfig
from dlrm_dcnv2.train import BENCH_DIR


def load(path, environ=None):
    return load_configs(path, SystemConfig, RuntimeConfig, DlrmRunConfig, environ=environ or {})


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
    system, runtime, cfg = load(BENCH_DIR / f"config_{name}.sh")
    assert (system.system, system.nodes, system.gpus_per_node) == (name, nodes, 8)
    assert (cfg.global_batch, cfg.eval_batch, cfg.lr) == (gbs, eval_batch, lr)
    assert (runtime.model_size, runtime.precision) == ("full", "bf16")
    assert cfg.local_batch(nodes * 8) == int(name.split("x")[-1])  # the file name states the local batch


def test_a_config_knob_this_implementation_lacks_is_rejected(tmp_path):
    config = tmp_path / "config_X.sh"
    config.write_text((BENCH_DIR / "config_CPU_1x1x2048.sh").read_text() + "export SCALER=16348\n")
    with pytest.raises(ConfigError, match="unknown variable.*SCALER"):
        load(config)
