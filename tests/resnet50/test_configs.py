import math
import re
from pathlib import Path

import pytest

from common.config import RuntimeConfig, SystemConfig, load_configs
from resnet50.config import ResNetConfig

BENCH = Path(__file__).resolve().parents[2] / "resnet50"
CONFIGS = sorted(p for p in BENCH.glob("config_*.sh") if not p.name.endswith("_common.sh"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_its_name_states_the_run_shape(path):
    system, _, cfg = load_configs(path, SystemConfig, RuntimeConfig, ResNetConfig, environ={})
    nodes, gpus, batch, accum = map(int, re.search(r"_(\d+)x(\d+)x(\d+)x(\d+)\.sh$", path.name).groups())
    assert (system.nodes, system.gpus_per_node, cfg.batch_size, accum) == (nodes, gpus, batch, 1)
    assert system.system == path.stem.removeprefix("config_")
    # closed_resnet_lars.yaml: weight decay must be 1e-4 * 2^N
    assert math.log2(cfg.weight_decay / 1e-4).is_integer()


def test_nvidia_single_node_config_has_the_published_hyperparameters():
    system, runtime, cfg = load_configs(BENCH / "config_DGXH100_1x8x400x1.sh", SystemConfig, RuntimeConfig,
                                        ResNetConfig, environ={})
    assert system.nodes * system.gpus_per_node * cfg.batch_size == 3200
    assert (cfg.lr, cfg.warmup_epochs, cfg.eval_offset, cfg.weight_decay, cfg.momentum, cfg.num_epochs) == \
        (11.0, 2, 2, 5e-05, 0.9, 37)
    assert (runtime.precision, cfg.channels_last) == ("bf16", True)
