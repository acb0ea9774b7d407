"""The throughput benchmark's FLOP count against NVIDIA's published ratio."""
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


# One real (tiny) measurement of gpt3.bench, the same as this file had, runs in make gpu-check's CPU form:
# tests/test_gpu_check.py::test_the_cpu_form_smokes_gpt3_and_measures_every_benchmark reads its table.
