"""The throughput benchmark: its FLOP count against NVIDIA's published ratio, and one real (tiny) measurement."""
import dataclasses

import pytest

from gpt3.bench import FULL, NVIDIA_H100_TOKENS_PER_S, count_parameters, flops_per_token, main


def test_model_flops_per_token_turn_nvidias_tokens_per_s_into_its_729_tflops():
    assert count_parameters(FULL) == pytest.approx(174.6e9, rel=1e-3)
    assert flops_per_token(FULL) * NVIDIA_H100_TOKENS_PER_S / 1e12 == pytest.approx(729, rel=0.01)


def test_flops_count_the_attention_term_per_layer():
    one, two = (dataclasses.replace(FULL, hidden=256, heads=2, ffn=1024, layers=n) for n in (1, 2))
    per_layer = 6 * (12 * 256 ** 2 + 13 * 256) + 12 * 2048 * 256
    assert flops_per_token(two) - flops_per_token(one) == per_layer


def test_the_benchmark_times_real_training_steps_and_writes_its_table(tmp_path, capsys):
    out = tmp_path / "gpt3_cpu.md"
    main(["--device", "cpu", "--hidden", "128", "--layers", "1", "--warmup", "1", "--steps", "1", "--out", str(out)])
    text = out.read_text()
    assert "1 timed steps after 1 warm-up steps" in text
    row = [c.strip() for c in text.strip().splitlines()[-1].strip("|").split("|")]
    assert row[:3] == ["1 layers, hidden 128", "1 (1)", "fp32"]
    assert float(row[4]) > 0 and float(row[5]) > 0  # sequences/s measured, alone and with the loader
    assert float(row[8].replace(",", "")) == pytest.approx(2048 * float(row[4]), rel=0.05)  # tokens/s
