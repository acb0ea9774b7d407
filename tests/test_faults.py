"""Faults during a run: a rank killed mid-training (rank 0 or another), a rank that hangs.

Each runs the real experiment loop (`common/run_local.sh`: torchrun, tee into the log, the checker) on a CPU
config with 2 gloo processes and asserts what the user gets: the experiment ends within 60 s of the fault, its
log ends with `run_stop` `aborted` (written by rank 0 when it survives, by the launcher when rank 0 itself
died), the loop goes on to the next experiment, and the job's exit code is non-zero with the failed
experiment named. ResNet-50 (data-parallel) and DLRM-DCNv2 (sharded embedding tables, TorchRec).
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DLRM_CPU_CONFIG, REPO, RESNET_CPU_CONFIG
from tests.faults import EXIT_LIMIT_S, FAST, assert_aborted_and_complete, kill, record, strike_each_experiment


def run_with_faults(bench: str, config: Path, module: str, data_dir: Path, logdir: Path, faults: list,
                    overrides: dict) -> tuple[subprocess.CompletedProcess, list[float]]:
    """`run_local.sh` with NEXP = len(faults), struck as `strike_each_experiment` says."""
    exports = "".join(f"export {k}={v}; " for k, v in overrides.items())
    script = f'set -euo pipefail; source "{config}"; {exports} cd {bench} && ../common/run_local.sh'
    env = {**os.environ, "DATADIR": str(data_dir), "LOGDIR": str(logdir), "NEXP": str(len(faults)),
           "DATESTAMP": "fault"}
    with open(logdir / "loop.out", "w") as out:
        proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            logs = [logdir / f"fault_{i}.log" for i in range(1, len(faults) + 1)]
            took = strike_each_experiment(logs, faults, module, logdir, lambda: proc.poll() is None)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, (logdir / "loop.out").read_text(), ""), took


def test_resnet_a_killed_rank_1_then_a_killed_rank_0_each_end_within_60_s_with_complete_logs(
        synthetic_imagenet, tmp_path):
    proc, took = run_with_faults("resnet50", RESNET_CPU_CONFIG, "resnet50.train", synthetic_imagenet, tmp_path,
                                 [kill(1), kill(0)], {**FAST, "BATCHSIZE": "32", "DATALOADER_WORKERS": "1"})
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "Beginning trial 2 of 2" in proc.stdout  # the loop went on after the first failure
    for i in (1, 2):
        assert f"experiment {i}: training failed ({tmp_path}/fault_{i}.log)" in proc.stdout, proc.stdout[-3000:]
        assert_aborted_and_complete(tmp_path / f"fault_{i}.log")
    assert len(took) == 2 and max(took) < EXIT_LIMIT_S, took
    for i, (rank, seconds) in enumerate(zip((1, 0), took), 1):
        record(f"SIGKILL of rank {rank} mid-training", "resnet50", "torchrun (run_local.sh)", seconds,
               tmp_path / f"fault_{i}.log", f"`FAILED: experiment {i}: training failed (<log>)`, next experiment runs")


def test_dlrm_a_killed_rank_ends_within_60_s_with_a_complete_log(dlrm_synthetic, tmp_path):
    proc, took = run_with_faults("dlrm_dcnv2", DLRM_CPU_CONFIG, "dlrm_dcnv2.train", dlrm_synthetic, tmp_path,
                                 [kill(1)], {"DGXNGPU": "2"})
    assert proc.returncode != 0 and f"experiment 1: training failed ({tmp_path}/fault_1.log)" in proc.stdout
    assert_aborted_and_complete(tmp_path / "fault_1.log")
    assert took[0] < EXIT_LIMIT_S, took
    record("SIGKILL of rank 1 mid-training", "dlrm_dcnv2 (sharded tables)", "torchrun (run_local.sh)", took[0],
           tmp_path / "fault_1.log", "`FAILED: experiment 1: training failed (<log>)`")


@pytest.mark.parametrize("timeout_s", [10])
def test_a_hung_rank_fails_the_run_after_dist_timeout_s(synthetic_imagenet, tmp_path, timeout_s):
    proc, took = run_with_faults("resnet50", RESNET_CPU_CONFIG, "resnet50.train", synthetic_imagenet, tmp_path,
                                 [kill(1, sig=signal.SIGSTOP)],
                                 {**FAST, "BATCHSIZE": "32", "DATALOADER_WORKERS": "1", "DIST_TIMEOUT_S": str(timeout_s)})
    assert proc.returncode != 0 and "experiment 1: training failed" in proc.stdout, proc.stdout[-3000:]
    assert_aborted_and_complete(tmp_path / "fault_1.log")
    assert timeout_s <= took[0] < EXIT_LIMIT_S, took
    record(f"rank 1 hung (SIGSTOP), DIST_TIMEOUT_S={timeout_s}", "resnet50", "torchrun (run_local.sh)", took[0],
           tmp_path / "fault_1.log", "rank 0's collective times out: `FAILED: experiment 1: training failed (<log>)`")
