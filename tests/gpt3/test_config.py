"""The rules' GBS arithmetic, NVIDIA's configs, and the LR schedule."""
import math
from pathlib import Path

import pytest

from common.config import RuntimeConfig, SystemConfig, load_configs
from gpt3.config import RULES, GPTRunConfig
from gpt3.optim import cosine_warmup_lr

GPT3_DIR = Path(__file__).resolve().parents[2] / "gpt3"


@pytest.mark.parametrize("name,gbs", [("64x8x128x4x8_mbs1", 2048), ("96x8x128x4x8_mbs1", 3072),
                                      ("192x8x64x4x8_mbs1", 3072), ("448x8x24x4x8_mbs1", 2688)])
def test_nvidia_configs_give_nvidias_global_batch(name, gbs):
    system, runtime, cfg = load_configs(GPT3_DIR / f"config_DGXH100_{name}.sh", SystemConfig, RuntimeConfig,
                                        GPTRunConfig, environ={})
    assert runtime.precision == "bf16"
    world = system.nodes * system.gpus_per_node
    assert (cfg.tensor_parallel, cfg.pipeline_parallel, cfg.interleaved_pipeline) == (4, 8, 12)
    assert cfg.global_batch(world) == gbs
    assert RULES.base_lr(gbs) == 2e-5  # every published shape is below NVIDIA's 3500 switch


def test_rules_arithmetic_at_nvidias_512_gpu_batch():
    gbs = 2048
    assert RULES.init_checkpoint_step(gbs) == 3000  # 4000 steps at GBS 1536
    assert RULES.eval_every_steps(gbs) == 12  # 24,576 sequences
    assert RULES.warmup_steps(gbs) == pytest.approx(198.75)
    assert RULES.schedule_steps(gbs) == pytest.approx(81450.0)
    assert RULES.base_lr(4096) == 3e-5


def test_cosine_schedule_with_linear_warmup():
    lr = lambda s: cosine_warmup_lr(s, base_lr=2e-5, min_lr=2e-6, warmup_steps=100, total_steps=1100)  # noqa: E731
    assert lr(50) == pytest.approx(1e-5)
    assert lr(100) == pytest.approx(2e-5)
    assert lr(600) == pytest.approx(2e-6 + 1.8e-5 * 0.5 * (math.cos(math.pi / 2) + 1))
    assert lr(1100) == pytest.approx(2e-6) and lr(5000) == 2e-6


def test_a_layout_that_does_not_divide_the_world_is_named():
    _, _, cfg = load_configs(GPT3_DIR / "config_DGXH100_64x8x128x4x8_mbs1.sh", SystemConfig, RuntimeConfig,
                             GPTRunConfig, environ={})
    with pytest.raises(ValueError, match="TENSOR_MODEL_PARALLEL x PIPELINE_MODEL_PARALLEL = 32 does not divide"):
        cfg.global_batch(48)
