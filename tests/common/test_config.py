from dataclasses import dataclass
from typing import Literal

import pytest

from common.config import ConfigError, SystemConfig, default_config_file, env_field, load_configs


@dataclass(frozen=True)
class ToyConfig:
    batch_size: int = env_field("BATCHSIZE", "per-process batch")
    lr: float = env_field("LR", "learning rate")
    fused: bool = env_field("FUSED", "use the fused kernel", False)
    mode: Literal["a", "b"] = env_field("MODE", "mode", "a")


SYSTEM = "export DGXSYSTEM=TOY\nexport DGXNNODES=1\nexport DGXNGPU=2\n"


def write(tmp_path, body):
    path = tmp_path / "config_TOY.sh"
    path.write_text(SYSTEM + body)
    return path


def test_loads_typed_values_and_environment_overrides(tmp_path):
    path = write(tmp_path, "export BATCHSIZE=32\nexport LR=${LR:-0.5}\nexport FUSED=1\n")
    system, toy = load_configs(path, SystemConfig, ToyConfig, environ={"LR": "2.0", "HOME": "/root"})
    assert (system.nodes, system.gpus_per_node, system.submission_platform) == (1, 2, "1xTOY")
    assert toy == ToyConfig(batch_size=32, lr=2.0, fused=True, mode="a")


def test_missing_variable_names_it_and_the_file(tmp_path):
    path = write(tmp_path, "export BATCHSIZE=32\n")
    with pytest.raises(ConfigError, match=r"config_TOY\.sh: required variable LR is not set"):
        load_configs(path, SystemConfig, ToyConfig, environ={})


def test_unknown_variable_names_it_and_the_file(tmp_path):
    path = write(tmp_path, "export BATCHSIZE=32\nexport LR=1\nexport BATCHSZE=64\n")
    with pytest.raises(ConfigError, match=r"config_TOY\.sh: exports unknown variable\(s\) BATCHSZE"):
        load_configs(path, SystemConfig, ToyConfig, environ={})


@pytest.mark.parametrize("line, message", [
    ("export BATCHSIZE=lots\nexport LR=1\n", r"BATCHSIZE='lots' is not an integer"),
    ("export BATCHSIZE=8\nexport LR=fast\n", r"LR='fast' is not a number"),
    ("export BATCHSIZE=8\nexport LR=1\nexport FUSED=maybe\n", r"FUSED='maybe' is not a boolean"),
    ("export BATCHSIZE=8\nexport LR=1\nexport MODE=c\n", r"MODE='c' is not one of a, b"),
])
def test_ill_typed_variable_names_it_the_file_and_the_type(tmp_path, line, message):
    path = write(tmp_path, line)
    with pytest.raises(ConfigError, match=r"config_TOY\.sh: " + message):
        load_configs(path, SystemConfig, ToyConfig, environ={})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_configs(tmp_path / "config_NOPE.sh", SystemConfig, environ={})


def test_default_config_file_comes_from_dgxsystem(tmp_path):
    assert default_config_file(tmp_path, {"DGXSYSTEM": "DGXH100_1x8x400x1"}) == \
        tmp_path / "config_DGXH100_1x8x400x1.sh"
    with pytest.raises(ConfigError, match="DGXSYSTEM is not set"):
        default_config_file(tmp_path, {})


def test_submission_platform_names_the_node_as_nvidias_logs_do(tmp_path):
    # NVIDIA/results/dgxh100_n8_ngc23.04_mxnet/resnet/result_0.txt: "submission_platform": "8xNVIDIA DGX H100"
    path = tmp_path / "config_DGXH100_8x8x50x1.sh"
    path.write_text("export DGXSYSTEM=DGXH100_8x8x50x1\nexport DGXNNODES=8\nexport DGXNGPU=8\n")
    (system,) = load_configs(path, SystemConfig, environ={})
    assert system.submission_platform == "8xNVIDIA DGX H100"
    (hgx,) = load_configs(path, SystemConfig, environ={"DGXSYSTEM": "HGXH100_2x8x1"})
    assert hgx.submission_platform == "8xNVIDIA HGX H100"
    (own,) = load_configs(path, SystemConfig, environ={"MLPERF_SUBMISSION_PLATFORM": "mine"})
    assert own.submission_platform == "mine"
