"""Tensor, pipeline and data parallelism (FSDP2), alone on 2 gloo processes and combined on 8, give the losses of one process."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def losses(tmp_path, nproc: int, *args: str) -> list[float]:
    out = tmp_path / f"losses_{nproc}_{'_'.join(args)}.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "tests.gpt3.parallel_worker", "--out", str(out), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return losses(tmp_path_factory.mktemp("single"), 1, "--steps", "5")


def test_single_process_losses_go_down(single):
    assert len(single) == 5 and single[-1] < single[0]


def test_tensor_parallel_2_with_sequence_parallel_matches_one_process(single, tmp_path):
    assert losses(tmp_path, 2, "--tp", "2", "--steps", "5") == pytest.approx(single, rel=1e-4)


def test_fsdp2_data_parallel_2_matches_one_process_with_twice_the_batch(single, tmp_path):
    assert losses(tmp_path, 2, "--steps", "5") == pytest.approx(single, rel=1e-4)


def test_pipeline_parallel_2_matches_one_process(single, tmp_path):
    assert losses(tmp_path, 2, "--pp", "2", "--steps", "5") == pytest.approx(single, rel=1e-4)


def test_interleaved_pipeline_2x2_virtual_stages_matches_one_process(single, tmp_path):
    assert losses(tmp_path, 2, "--pp", "2", "--interleave", "2", "--steps", "5") == pytest.approx(single, rel=1e-4)


def test_tp2_x_interleaved_pp2_x_fsdp2_on_8_processes_matches_one_process(single, tmp_path):
    """All three on one ("pp", "dp", "tp") mesh: NVIDIA's layout (TP x interleaved PP x DP) in miniature."""
    assert losses(tmp_path, 8, "--tp", "2", "--pp", "2", "--interleave", "2", "--steps", "5") == pytest.approx(
        single, rel=1e-4)
