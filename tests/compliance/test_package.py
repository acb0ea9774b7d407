"""Packaging CPU runs into the MLCommons submission tree, checked by the official package checker."""
import json
import re
import subprocess
import sys

import pytest

from compliance.package import PACKAGE_SUCCESS
from tests.conftest import REPO, reseeded_copies

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def five_logs(resnet_cpu_experiments, tmp_path_factory):
    """The rules' 5 ResNet-50 result logs: the 2 real CPU runs and re-seeded copies of them."""
    _, logs = resnet_cpu_experiments
    return reseeded_copies(logs, 5, tmp_path_factory.mktemp("five-logs"))


def package(logs, out, *extra):
    return subprocess.run([sys.executable, "-m", "compliance.package", "--org", "mlperf-h100",
                           "--bench", "resnet50", "--out", str(out), *extra, *map(str, logs)],
                          cwd=REPO, capture_output=True, text=True)


def test_five_result_logs_package_as_a_dry_run_that_the_package_checker_accepts(five_logs, tmp_path):
    logs = five_logs
    proc = package(logs, tmp_path, "--system", "host", "--dry-run")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert PACKAGE_SUCCESS in proc.stdout
    org = tmp_path / "mlperf-h100"
    system = json.loads(next((org / "systems").glob("*.json")).read_text())
    assert system["submitter"] == "mlperf-h100" and "DRY RUN" in system["sw_notes"]
    results = org / "results" / system["system_name"] / "resnet"
    assert sorted(p.name for p in results.iterdir()) == [f"result_{i}.txt" for i in range(5)]
    impl = org / "benchmarks" / "resnet" / "implementations" / "pytorch"
    assert (impl / "resnet50" / "train.py").is_file() and (impl / "common" / "harness.py").is_file()
    # the summarizer scored the benchmark (olympic mean of the run times, in minutes)
    summary = proc.stdout.split("== result_summarizer", 1)[1]
    assert re.search(rf"\| {system['system_name']} \| resnet \| \d+\.\d{{3}} \|", summary), summary


def test_synthetic_runs_are_refused_without_the_dry_run_flag(five_logs, tmp_path):
    logs = five_logs
    proc = package(logs, tmp_path, "--system", str(REPO / "compliance" / "systems" / "dgxh100_n1.json"))
    assert proc.returncode == 2
    assert "synthetic data and can never be a result" in proc.stderr
    assert not (tmp_path / "mlperf-h100").exists()


def test_wrong_number_of_runs_is_refused(five_logs, tmp_path):
    logs = five_logs
    proc = package(logs[:3], tmp_path, "--system", "host", "--dry-run")
    assert proc.returncode == 2 and "needs exactly 5 result logs, got 3" in proc.stderr


def test_every_system_description_passes_the_official_checker():
    for path in sorted((REPO / "compliance" / "systems").glob("*.json")):
        out = subprocess.run([sys.executable, "-m", "mlperf_logging.system_desc_checker", str(path),
                              "training", "3.0.0", "--log_output", "/dev/null"],
                             capture_output=True, text=True)
        assert "System description checker passed" in out.stdout + out.stderr, (path, out.stderr)


def without_data_synthetic(log, out):
    out.write_text("".join(line for line in log.read_text().splitlines(keepends=True)
                           if '"key": "data_synthetic"' not in line))
    return out


def test_a_log_of_this_code_without_data_synthetic_is_refused(five_logs, tmp_path):
    logs = five_logs
    tampered = [without_data_synthetic(logs[0], tmp_path / "cut.log"), *logs[1:]]
    proc = package(tampered, tmp_path, "--system", "host", "--dry-run")
    assert proc.returncode == 2 and "rule DATA_SYNTHETIC_LOGGED" in proc.stderr and "cut.log" in proc.stderr
    assert not (tmp_path / "mlperf-h100").exists()
    check = subprocess.run([sys.executable, "-m", "compliance.check", str(tampered[0])], cwd=REPO,
                           capture_output=True, text=True)
    assert check.returncode == 1 and "rule DATA_SYNTHETIC_LOGGED" in check.stdout
    assert "cut.log: FAILED" in check.stdout
