"""The rnnt configs: NVIDIA's published shapes with the hyperparameters of their global batch (and the RCP's)."""
import json
import re
from pathlib import Path

import pytest

from common.config import RuntimeConfig, SystemConfig, load_configs
from compliance.check import rules_file
from rnnt.config import RNNTConfig

BENCH = Path(__file__).resolve().parents[2] / "rnnt"
CONFIGS = sorted(p for p in BENCH.glob("config_*.sh") if not p.name.endswith("_common.sh"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_its_name_states_the_run_shape(path):
    system, _, cfg = load_configs(path, SystemConfig, RuntimeConfig, RNNTConfig, environ={})
    shape = tuple(map(int, re.search(r"_(\d+)x(\d+)x(\d+)(?:x(\d+))?\.sh$", path.name).groups(default="1")))
    assert (system.nodes, system.gpus_per_node, cfg.batch_size, cfg.accumulation) == shape
    assert system.system == path.stem.removeprefix("config_")


def rcp_hyperparameters(global_batch):
    rcps = json.loads((rules_file("closed_rnnt.yaml").parents[2] / "rcp_checker" / "training_3.0.0" /
                       "rcps_rnnt.json").read_text())
    r = next(r["Hyperparams"] for r in rcps.values() if r["BS"] == global_batch)
    return (r["opt_base_learning_rate"], r["opt_learning_rate_warmup_epochs"], r["opt_lamb_learning_rate_hold_epochs"],
            r["opt_lamb_learning_rate_decay_poly_power"], r["model_eva_ema_factor"], r["opt_lamb_beta_1"],
            r["opt_lamb_beta_2"])  # (sic: the RCP file spells it model_eva_)


# NVIDIA's hyperparameters_4096.sh (no RCP at 4096): LR, warmup, hold, decay, EMA, betas
NVIDIA_4096 = (0.013, 6, 33, 0.955, 0.995, 0.833, 0.98)


@pytest.mark.parametrize("name, global_batch", [("config_DGXH100_1x8x192x1.sh", 1536),
                                                ("config_DGXH100_8x8x32x1.sh", 2048),
                                                ("config_DGXH100_64x8x8x1.sh", 4096)])
def test_dgx_configs_carry_the_hyperparameters_of_their_global_batch(name, global_batch):
    system, runtime, cfg = load_configs(BENCH / name, SystemConfig, RuntimeConfig, RNNTConfig, environ={})
    assert system.nodes * system.gpus_per_node * cfg.batch_size == global_batch
    expected = NVIDIA_4096 if global_batch == 4096 else rcp_hyperparameters(global_batch)
    assert (cfg.lr, cfg.warmup_epochs, cfg.hold_epochs, cfg.decay, cfg.ema, cfg.beta1, cfg.beta2) == expected
    assert (cfg.init_scale, cfg.num_buckets, runtime.precision) == (0.5, 1, "bf16")
