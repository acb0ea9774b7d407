"""Shared fixtures: the synthetic datasets and CPU runs of ResNet-50."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (bash, torchrun, srun) must find this interpreter's python3 and torchrun.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
RESNET_CPU_CONFIG = REPO / "resnet50" / "config_CPU_1x1x64x1.sh"
BERT_CPU_CONFIG = REPO / "bert" / "config_CPU_1x1x32x1_pack.sh"


def run_bash(script: str, env: dict | None = None, overrides: dict | None = None, timeout: int = 900,
             cwd: Path = REPO, config: Path = RESNET_CPU_CONFIG):
    """Run `script` in bash after sourcing a CPU config; `overrides` are exported after it."""
    exports = "".join(f"export {name}={shlex.quote(value)}; " for name, value in (overrides or {}).items())
    return subprocess.run(["bash", "-c", f'set -euo pipefail; source "{config}"; {exports}{script}'],
                          cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def sigterm_when_seen(args: list[str], marker, env: dict | None = None, timeout: int = 120) -> int:
    """Start `args`, send SIGTERM once a stdout line satisfies `marker(line)`; return the exit code."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if marker(line):
            break
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


@pytest.fixture(scope="session")
def synthetic_imagenet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet-synthetic")
    subprocess.run(["python3", "-m", "resnet50.data", "synthesize", str(root)], cwd=REPO, check=True,
                   capture_output=True)
    return root


def config_env(config: Path, **overrides) -> dict:
    """This process's environment with a config file sourced, plus overrides."""
    out = subprocess.run(["bash", "-c", f'source "{config}" && env -0'],
                         capture_output=True, text=True, check=True).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def bert_synthetic(tmp_path_factory) -> Path:
    """The synthetic BERT corpus, packed data, eval file and phase-1 checkpoint (about 40 s)."""
    root = tmp_path_factory.mktemp("bert-synthetic")
    subprocess.run(["python3", "-m", "bert.data", "synthesize", str(root)], cwd=REPO, check=True,
                   capture_output=True)
    return root


@pytest.fixture(scope="session")
def resnet_cpu_experiments(synthetic_imagenet, tmp_path_factory):
    """Five CPU runs through common/run_local.sh (the experiment loop of run.sub, without SLURM)."""
    logdir = tmp_path_factory.mktemp("resnet-results")
    proc = run_bash("cd resnet50 && ../common/run_local.sh",
                    env={"DATADIR": str(synthetic_imagenet), "LOGDIR": str(logdir), "NEXP": "5",
                         "DATESTAMP": "cpu"}, timeout=1500)
    logs = sorted(logdir.glob("cpu_*.log"))
    return proc, logs
