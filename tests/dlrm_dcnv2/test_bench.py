"""The throughput script measures real training steps and writes its table."""
import re

from dlrm_dcnv2 import bench


def test_bench_writes_a_measured_table(tmp_path):
    out = tmp_path / "dlrm.md"
    assert bench.main(["--model", "small", "--batch", "256", "--warmup", "1", "--steps", "2", "--out", str(out)]) == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| small"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:6] == ["256", "1 + 2"]
    step_ms, samples_s = (float(c.replace(",", "")) for c in cells[6:8])
    assert step_ms > 0 and abs(samples_s - 256 / (step_ms / 1e3)) / samples_s < 0.01  # one measurement, two units
    assert re.search(r"load average before measuring: [\d.]+", text)


def test_full_shape_keeps_the_dense_part_and_n_full_tables():
    shape = bench.bench_shape("full", 2)
    assert shape.table_rows[:2] == (40_000_000, 39_060) and max(shape.table_rows[2:]) == 1_000
    assert (shape.embedding_dim, shape.cross_rank, shape.top_mlp) == (128, 512, (1024, 1024, 512, 256, 1))
