"""The throughput script times real training steps, alone and with the real WAV loader, and writes its table."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn

from rnnt import synthetic
from rnnt.bench import NVIDIA_BATCH, lstm_flops, main, train_flops
from rnnt.data import TRAIN_SPLITS
from rnnt.model import RNNTShape, build_rnnt


def table_row(text: str, model: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(f"| {model}"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_bench_writes_a_measured_table(tmp_path):
    out = tmp_path / "rnnt_cpu.md"
    assert main(["--device", "cpu", "--model", "debug", "--batch", "2", "--duration", "0.5", "--warmup", "1",
                 "--steps", "1", "--workers", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "1 timed steps after 1 warm-up steps" in text
    assert "`python3 -m rnnt.bench --device cpu --model debug --batch 2 --duration 0.5" in text
    assert re.search(r"load average before measuring: [\d.]+", text)
    cells = table_row(text, "debug")
    assert cells[0] == "debug (LSTM 128/64, 1023 labels)" and cells[2] == "fp32"
    assert re.fullmatch(r"2 x 0\.\d s", cells[1])  # speed perturbation: 0.85-1.15 x 0.5 s
    step_ms, alone, loaded, ratio, tflops = (float(c.replace(",", "")) for c in cells[3:8])
    assert step_ms > 0 and alone == pytest.approx(2 / (step_ms / 1e3), rel=0.01)  # one measurement, two units
    assert loaded > 0 and ratio == pytest.approx(loaded / alone, abs=0.01)
    assert tflops > 0
    assert cells[8:] == ["False", "1", "-"]  # compile, loader workers, no NVIDIA anchor for the debug model


def test_bench_reads_a_prepared_directory_with_its_tokenizer(tmp_path):
    spec = synthetic.SyntheticSpec()
    rng = np.random.default_rng(0)
    phones, pronunciations = synthetic.lexicon(rng, spec)
    transcripts = [t for split in TRAIN_SPLITS
                   for t in synthetic.write_split(tmp_path, split, 2, rng, spec, phones, pronunciations)]
    model = synthetic.train_tokenizer(tmp_path, transcripts, spec)
    out = tmp_path / "rnnt.md"
    assert main(["--device", "cpu", "--model", "debug", "--batch", "2", "--warmup", "1", "--steps", "1", "--workers",
                 "0", "--data-dir", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    import sentencepiece

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    cells = table_row(text, "debug")
    assert cells[0] == f"debug (LSTM 128/64, {pieces} labels)" and float(cells[4]) > 0 and float(cells[5]) > 0
    assert f"the training splits of `{tmp_path}`" in text
    with pytest.raises(SystemExit, match="1023-piece tokenizer"):
        main(["--device", "cpu", "--model", "full", "--batch", "2", "--data-dir", str(tmp_path), "--out", str(out)])


def test_lstm_flops_are_two_per_weight_and_the_full_model_is_49m_parameters():
    for inputs, hidden, layers in ((240, 1024, 2), (2048, 1024, 3), (512, 512, 2)):
        weights = sum(p.numel() for name, p in nn.LSTM(inputs, hidden, layers).named_parameters()
                      if name.startswith("weight"))
        assert lstm_flops(inputs, hidden, layers) == 2 * weights
    with torch.device("meta"):
        full = build_rnnt(RNNTShape())
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(49.0e6, rel=1e-3)
    assert NVIDIA_BATCH == 192


def test_each_label_adds_a_prediction_step_and_a_row_of_the_joint_grid():
    shape = RNNTShape()
    # 1 s: 101 feature frames, spliced x3 -> 34, stacked x2 -> 17 encoder frames, each joined with every label
    per_label = 3 * (17 * 2 * 512 * 1024 + lstm_flops(512, 512, 2) + 2 * 512 * 512)
    assert train_flops(shape, 16000, 2) - train_flops(shape, 16000, 1) == per_label
