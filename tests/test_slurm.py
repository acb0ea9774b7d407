"""`sbatch run.sub` for real, on a one-node SLURM cluster started for the test."""
import os

import pytest

from compliance.check import run_checker, summarize
from compliance.check import read_events as mllog_events
from tests.conftest import BERT_CPU_CONFIG, REPO, run_bash
from tests.slurm_cluster import SlurmCluster, missing_binaries

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        reason = (f"SLURM not installed (missing {', '.join(missing)}; "
                  "apt-get install slurmd slurmctld slurm-client munge)")
        if os.environ.get("MLPERF_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()
    for pid in cluster.pids:
        assert not os.path.exists(f"/proc/{pid}"), f"SLURM/munge daemon {pid} still running"


def sbatch_run_sub(slurm, bench: str, data_dir, tmp_path, nexp: int, overrides: dict, **run_bash_args) -> str:
    """Submit BENCH/run.sub with sbatch, wait for it to complete, return the job's output."""
    proc = run_bash(f'sbatch --parsable -N "$DGXNNODES" -t "$WALLTIME" -o "{tmp_path}/slurm-%j.out" run.sub',
                    cwd=REPO / bench,
                    env={**slurm.env, "DATADIR": str(data_dir), "LOGDIR": str(tmp_path / "logs"),
                         "NEXP": str(nexp), "DATESTAMP": "slurm"},
                    overrides=overrides, **run_bash_args)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip().split(";")[0]
    state = slurm.wait_for_job(job_id, timeout=1200)
    output = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert state == "COMPLETED", output[-5000:]
    return output


def test_sbatch_run_sub_runs_two_experiments_of_two_tasks(slurm, synthetic_imagenet, tmp_path):
    logdir = tmp_path / "logs"
    output = sbatch_run_sub(slurm, "resnet50", synthetic_imagenet, tmp_path, 2, {"DGXNGPU": "2", "BATCHSIZE": "32"})
    logs = sorted(logdir.glob("slurm_*.log"))
    assert [log.name for log in logs] == ["slurm_1.log", "slurm_2.log"]
    for log in logs:
        passed, checker_output = run_checker(log)
        assert passed, checker_output
        events = mllog_events(log)
        assert [e["key"] for e in events].count("init_start") == 1
        assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 64
        assert next(e["value"] for e in events if e["key"] == "model_bn_span") == 32  # 2 srun tasks x 32
    assert summarize(logs[0]).seed != summarize(logs[1]).seed
    assert "All 2 experiment(s) passed" in output


def test_sbatch_bert_run_sub_trains_from_its_checkpoint_on_two_tasks(slurm, bert_synthetic, tmp_path):
    sbatch_run_sub(slurm, "bert", bert_synthetic, tmp_path, 1, {"DGXNGPU": "2", "BATCHSIZE": "16"},
                   config=BERT_CPU_CONFIG)
    log = tmp_path / "logs" / "slurm_1.log"
    passed, checker_output = run_checker(log)
    assert passed, checker_output
    events = mllog_events(log)
    assert [e["key"] for e in events].count("init_start") == 1
    assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 64  # 2 srun tasks x 16 x 2
    assert summarize(log).status == "success"
