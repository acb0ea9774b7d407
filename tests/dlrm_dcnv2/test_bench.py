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
