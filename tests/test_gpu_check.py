"""`make gpu-check`'s CPU form (what CI runs so the GPU check cannot rot), its budget, skips and summary."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tools import gpu_check


def test_the_cpu_form_smokes_gpt3_and_measures_every_benchmark(gpt3_synthetic, tmp_path):
    """make gpu-check DEVICE=cpu: gpt3's train.py on its CPU config (bf16, a one-rank gloo group, stopped after its
    first evaluation, checker clean but the target), then every bench script at tiny shapes; the summary has a
    measured row for each."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "gpt3").symlink_to(gpt3_synthetic)  # the session's dataset; synthetic.py keeps what is there
    out = tmp_path / "check"
    proc = subprocess.run(["make", "gpu-check", "DEVICE=cpu", f"GPU_CHECK_OUT={out}", f"GPU_CHECK_ARGS=--data {data}"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "no stage failed" in proc.stdout
    record = json.loads((out / "gpu_check.json").read_text())
    verdicts = {(s["bench"], s["kind"]): s["status"] for s in record["stages"]}
    assert verdicts == {("gpt3", "smoke"): "passed", **{(b, "bench"): "passed" for b in gpu_check.BENCHES}}
    smoke = next(s for s in record["stages"] if s["kind"] == "smoke")
    assert "1 evaluation, run_stop aborted on purpose" in smoke["detail"]
    mllog = (out / "logs" / "gpt3_smoke.log").read_text()
    assert '"key": "stop_after_evals"' in mllog and '"status": "aborted"' in mllog
    summary = (out / "gpu_summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and " eager | " in line]
    assert sorted({line.split(" | ")[0][2:] for line in rows}) == sorted(gpu_check.BENCHES)
    for line in rows:
        alone = line.split(" | ")[5].split()[0]
        assert float(alone.replace(",", "")) > 0, line  # measured, not typed in
    for bench in gpu_check.BENCHES:
        assert (out / "perf" / f"{bench}_cpu.json").is_file()
    # gpt3.bench's real (tiny) measurement: one full-vocabulary layer of hidden 128, its tokens/s 2048 x sequences/s
    text = (out / "perf" / "gpt3_cpu.md").read_text()
    assert "1 timed steps after 1 warm-up steps" in text
    row = [c.strip() for c in text.strip().splitlines()[-1].strip("|").split("|")]
    assert row[:3] == ["1 layers, hidden 128", "1 (1)", "fp32"]
    assert float(row[4]) > 0 and float(row[5]) > 0  # sequences/s measured, alone and with the loader
    assert float(row[8].replace(",", "")) == pytest.approx(2048 * float(row[4]), rel=0.05)  # tokens/s
    gpt3_row = next(line for line in rows if line.startswith("| gpt3 |")).split(" | ")
    scale = json.loads((out / "perf" / "gpt3_cpu.json").read_text())["rows"][0]["anchor_scale"]
    assert 0 < scale < 1e-3  # the slice's FLOPs per sequence over GPT-3 175B's
    assert float(gpt3_row[8]) == pytest.approx(float(row[4]) * scale / 0.331, rel=0.05)  # alone / NVIDIA


def test_a_stage_that_would_overrun_the_budget_skips_itself_and_says_why(tmp_path):
    out = tmp_path / "check"
    assert gpu_check.main(["--device", "cpu", "--out", str(out), "--only", "gpt3,rnnt", "--budget-s", "0"]) == 0
    stages = json.loads((out / "gpu_check.json").read_text())["stages"]
    assert [(s["bench"], s["kind"], s["status"]) for s in stages] == [
        ("gpt3", "smoke", "skipped"), ("gpt3", "bench", "skipped"), ("rnnt", "bench", "skipped")]
    assert all(s["detail"].startswith("would overrun: its budget is ") for s in stages)
    assert "| rnnt | bench | skipped | 0 | would overrun" in (out / "gpu_summary.md").read_text()


def test_a_benchmark_without_its_libraries_is_skipped_by_name(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.NEEDS, ("rnnt", "bench"), ("no_such_module_xyz",))
    out = tmp_path / "check"
    assert gpu_check.main(["--device", "cpu", "--out", str(out), "--only", "rnnt", "--stages", "bench"]) == 0
    [stage] = json.loads((out / "gpu_check.json").read_text())["stages"]
    assert (stage["status"], stage["detail"]) == ("skipped", "needs no_such_module_xyz, not installed here")


def test_a_failing_stage_fails_the_check_with_its_output_kept(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.CPU_ARGS, "rnnt", ["--batch", "not-a-number"])
    out = tmp_path / "check"
    assert gpu_check.main(["--device", "cpu", "--out", str(out), "--only", "rnnt", "--stages", "bench"]) == 1
    [stage] = json.loads((out / "gpu_check.json").read_text())["stages"]
    assert stage["status"] == "failed" and stage["detail"].startswith("exit 2: ")
    assert "invalid int value: 'not-a-number'" in (out / stage["output"]).read_text()


def test_a_stage_past_its_budget_is_killed_with_its_children(tmp_path):
    output = tmp_path / "child.out"
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
             "print('started', flush=True); time.sleep(60)"
    rc, seconds = gpu_check.run_child([sys.executable, "-c", script], {}, 2, output)
    assert rc is None and 2 <= seconds < 10
    assert "started" in output.read_text()


# The official checker's lines on a resnet50 log stopped after its first evaluation (STOP_AFTER_EVALS=1).
STOPPED = ("INFO -  Compliance checks: training_3.0.0/closed_resnet_lars.yaml\n"
           "WARNING -  Required AT_LEAST_ONE occurrence of 'cache_clear' but found 0\n------------------------------\n"
           "Failed checks for eval_accuracy : v['value'] >= 0.7590 and v['value'] < 1.0\nERROR - FAILED")


@pytest.mark.parametrize("output, only_target", [
    (STOPPED, True),
    ("INFO - Running compliance\nSUCCESS", True),
    (STOPPED.replace("------", "ERROR - Required EXACTLY_ONE occurrence of 'seed' but found 0\n------"), False),
    (STOPPED.replace("Failed checks for eval_accuracy", "Failed checks for epoch_count"), False),
])
def test_the_smoke_verdict_forgives_the_unreached_target_only(output, only_target):
    assert gpu_check.target_only_failures(output)[0] is only_target


def test_collect_copies_the_tables_and_the_summary(tmp_path):
    out, docs = tmp_path / "check", tmp_path / "docs"
    (out / "perf").mkdir(parents=True)
    docs.mkdir()
    with pytest.raises(SystemExit, match="holds no gpu_summary.md"):
        gpu_check.collect(out, docs)
    (out / "perf" / "resnet50_h200.md").write_text("table")
    (out / "perf" / "resnet50_h200.json").write_text("{}")
    (out / "gpu_summary.md").write_text("summary")
    assert sorted(p.name for p in gpu_check.collect(out, docs)) == [
        "gpu_summary.md", "resnet50_h200.json", "resnet50_h200.md"]
