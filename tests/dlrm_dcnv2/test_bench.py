"""The throughput script measures real training steps, alone and with the real reader, and writes its table."""
import re

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


def test_full_shape_keeps_the_dense_part_and_n_full_tables():
    shape = bench.bench_shape("full", 2)
    assert shape.table_rows[:2] == (40_000_000, 39_060) and max(shape.table_rows[2:]) == 1_000
    assert (shape.embedding_dim, shape.cross_rank, shape.top_mlp) == (128, 512, (1024, 1024, 512, 256, 1))
