"""Shared fixtures: the synthetic ImageNet-layout dataset and CPU runs of ResNet-50."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (bash, torchrun, srun) must find this interpreter's python3 and torchrun.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
RESNET_CPU_CONFIG = REPO / "resnet50" / "config_CPU_1x1x64x1.sh"


def mllog_events(path: Path) -> list[dict]:
    return [json.loads(line.split(":::MLLOG ", 1)[1])
            for line in Path(path).read_text().splitlines() if ":::MLLOG " in line]


def run_bash(script: str, env: dict | None = None, timeout: int = 900, cwd: Path = REPO):
    """Run `script` in bash with the CPU config sourced; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{RESNET_CPU_CONFIG}"; {script}'],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet-synthetic")
    subprocess.run(["python3", "-m", "resnet50.data", "synthesize", str(root)], cwd=REPO, check=True,
                   capture_output=True)
    return root


@pytest.fixture(scope="session")
def resnet_cpu_experiments(synthetic_imagenet, tmp_path_factory):
    """Five CPU runs through the shared experiment loop (run_and_time.sh, local launcher)."""
    logdir = tmp_path_factory.mktemp("resnet-results")
    proc = run_bash(f'export BENCH_DIR="{REPO}/resnet50"; source "{REPO}/common/experiments.sh"; '
                    "LAUNCHER=local mlperf_experiments",
                    env={"DATADIR": str(synthetic_imagenet), "LOGDIR": str(logdir), "NEXP": "5",
                         "DATESTAMP": "cpu"}, timeout=1500)
    logs = sorted(logdir.glob("cpu_*.log"))
    return proc, logs
