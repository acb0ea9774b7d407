"""DLRM fixtures: synthetic datasets written by `python3 -m dlrm_dcnv2.data synthesize`."""
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

DLRM_CPU_CONFIG = REPO / "dlrm_dcnv2" / "config_CPU_1x1x2048.sh"


def synthesize(root: Path, *args: str) -> Path:
    subprocess.run(["python3", "-m", "dlrm_dcnv2.data", "synthesize", str(root), *args], cwd=REPO, check=True,
                   capture_output=True)
    return root


@pytest.fixture(scope="session")
def dlrm_tiny(tmp_path_factory) -> Path:
    """23 training days of 256 rows and 1,000 validation rows (a few seconds)."""
    return synthesize(tmp_path_factory.mktemp("dlrm-tiny"), "--rows-per-day", "256", "--eval-rows", "1000")


@pytest.fixture(scope="session")
def dlrm_synthetic(tmp_path_factory) -> Path:
    """The dataset `make smoke BENCH=dlrm_dcnv2` trains on (about 10 s, 400 MB)."""
    return synthesize(tmp_path_factory.mktemp("dlrm-synthetic"))
