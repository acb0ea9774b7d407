"""The seed sweep's command line, its resumption and its table (the runs themselves are `make smoke`)."""
import argparse
import json
import re

import pytest

from common import sweep


def test_seeds_are_numbers_and_ranges():
    assert sweep.parse_seeds("1-3,1416050522,2") == [1, 2, 3, 1416050522]
    with pytest.raises(argparse.ArgumentTypeError, match="expected numbers"):
        sweep.parse_seeds("one")


def test_a_sweep_resumes_from_the_seeds_it_already_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "REPO_ROOT", tmp_path)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "train.py").write_text("")
    store = tmp_path / "results" / "sweep" / "toy"
    store.mkdir(parents=True)
    done = {"seed": 1, "passed": True, "wall_s": 60.0, "log": "x", "status": "success", "minutes": 0.5, "evals": 3,
            "quality": 0.8, "epoch_num": 12, "checker": "SUCCESS"}
    (store / "seed_1.json").write_text(json.dumps(done))
    ran = []

    def fake_run(bench, seed, out):
        ran.append(seed)
        return {**done, "seed": seed, "passed": seed != 3, "status": "success" if seed != 3 else "aborted"}

    monkeypatch.setattr(sweep, "run_seed", fake_run)
    assert sweep.main(["toy", "--seeds", "1-3", "--out", str(tmp_path / "t.md")]) == 1  # seed 3 failed
    assert ran == [2, 3] and json.loads((store / "seed_3.json").read_text())["passed"] is False
    text = (tmp_path / "t.md").read_text()
    assert "**2/3 seeds reached the target" in text and "| 3 | FAILED (aborted) |" in text
    ran.clear()
    sweep.main(["toy", "--seeds", "1-3", "--out", str(tmp_path / "t.md")])
    assert ran == []  # every seed kept


def test_a_run_that_ended_before_its_first_evaluation_is_described_and_tabled():
    from common.sweep import describe, table
    aborted = {"seed": 5, "passed": False, "wall_s": 60.0, "log": "x/sweep_1.log", "status": "aborted",
               "minutes": 1.8, "evals": 0, "quality": None, "epoch_num": None, "checker": "FAILED"}
    assert "did NOT reach the target, quality - at epoch_num - (0 evals)" in describe(aborted)
    assert "| 5 | FAILED (aborted) | 0 | - | - | 1.80 |" in table("maskrcnn", [aborted], "cmd")


def test_the_table_names_the_commit_and_the_host_that_measured_it():
    from common.sweep import source_version, table
    version = source_version()
    assert re.fullmatch(r"commit [0-9a-f]{7,}( with uncommitted changes)?", version), version
    done = {"seed": 1, "passed": True, "wall_s": 60.0, "log": "x/sweep_1.log", "status": "success", "minutes": 0.9,
            "evals": 3, "quality": 0.5, "epoch_num": 3, "checker": "SUCCESS"}
    text = table("rnnt", [done], "cmd", "host: Some CPU, 2 cores, fp32 matmul 400 GFLOP/s (torch)", version)
    assert f"once per seed, at {version}. Host: Some CPU, 2 cores, fp32 matmul 400 GFLOP/s (torch)." in text
