"""The throughput script measures real training steps, alone and with the real reader, and writes its table."""
import json
import re

import pytest

from dlrm_dcnv2 import bench


def test_bench_writes_a_measured_table(tmp_path):
    out = tmp_path / "dlrm.md"
    assert bench.main(["--model", "debug", "--batch", "256", "--warmup", "1", "--steps", "2", "--out", str(out)]) == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| debug"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["256", "fp32"]
    step_ms, alone, loaded, ratio = (float(c.replace(",", "")) for c in cells[3:7])
    assert step_ms > 0 and abs(alone - 256 / (step_ms / 1e3)) / alone < 0.01  # one measurement, two units
    assert loaded > 0 and abs(ratio - loaded / alone) < 0.01
    assert re.search(r"load average before measuring: [\d.]+", text)
    assert "`python3 -m dlrm_dcnv2.bench --model debug --batch 256" in text
    # the same numbers as JSON beside the table, what tools.gpu_check's summary reads
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["bench"] == "dlrm_dcnv2" and record["unit"] == "samples" and record["device_slug"] == "cpu"
    (only,) = record["rows"]
    assert only["batch"] == "256" and abs(only["alone"]["samples_per_s"] - alone) / alone < 0.01
    assert only["anchor"] == "-" and only["anchor_per_s"] is None


def test_full_shape_keeps_the_dense_part_and_n_full_tables():
    shape = bench.bench_shape("full", 2)
    assert shape.table_rows[:2] == (40_000_000, 39_060) and max(shape.table_rows[2:]) == 1_000
    assert (shape.embedding_dim, shape.cross_rank, shape.top_mlp) == (128, 512, (1024, 1024, 512, 256, 1))


@pytest.mark.parametrize("text, value", [("7,009", 7009), ("0.331 (678 tokens/s)", 0.331), ("1.6-1.8M", 1.7e6),
                                         ("~277", 277), ("-", None), ("1,741", 1741)])
def test_nvidia_anchors_read_as_numbers_in_the_table_unit(text, value):
    from common.bench import anchor_value
    assert anchor_value(text) == pytest.approx(value) if value is not None else anchor_value(text) is None


def test_the_torch_only_fallback_is_the_same_model_as_torchrecs():
    """model.TorchEmbeddingBags (what bench measures without TorchRec) given TorchRec's table weights computes the
    same logits from the same rows, fed as per-table id tensors instead of a KeyedJaggedTensor."""
    import numpy as np
    import torch

    from dlrm_dcnv2 import data
    from dlrm_dcnv2.model import DLRMDCNv2, ModelShape

    torch.manual_seed(0)
    shape = ModelShape.small()
    reference, fallback = DLRMDCNv2(shape), DLRMDCNv2(shape, embeddings="torch")
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("embeddings.")}
    for i, name in enumerate(reference.feature_names):
        state[f"embeddings.tables.{i}.weight"] = reference.embeddings.embedding_bags[f"t_{name}"].weight
    fallback.load_state_dict(state)
    rows = bench.random_rows(np.random.default_rng(1), 8, shape)
    cpu = torch.device("cpu")
    with torch.no_grad():
        want = reference(*(lambda b: (b.dense, b.sparse))(data.to_batch(rows, shape.hotness, cpu)))
        got = fallback(*(lambda b: (b.dense, b.sparse))(data.to_batch(rows, shape.hotness, cpu, kjt=False)))
    torch.testing.assert_close(got, want)
    assert want.std() > 0


def test_without_torchrec_the_bench_measures_the_fallback_and_says_so(tmp_path):
    """As on the GPU check's machine: torchrec and fbgemm_gpu cannot be imported."""
    import subprocess
    import sys

    out = tmp_path / "dlrm.md"
    code = ("import sys; sys.modules.update(torchrec=None, fbgemm_gpu=None); from dlrm_dcnv2 import bench; "
            f"raise SystemExit(bench.main(['--model', 'debug', '--batch', '64', '--warmup', '1', '--steps', '1', "
            f"'--out', {str(out)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TorchRec/FBGEMM not installed; measuring the torch.nn.EmbeddingBag fallback" in proc.stdout
    text = out.read_text()
    assert "| debug, nn.EmbeddingBag fallback (no TorchRec) | 64 | fp32 |" in text
    assert "torch-only fallback (TorchRec/FBGEMM not used" in text
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["alone"]["samples_per_s"] > 0
