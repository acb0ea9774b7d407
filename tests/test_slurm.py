"""`sbatch run.sub` for real, on a one-node SLURM cluster started for the test."""
import os

import pytest

from compliance.check import run_checker, summarize
from compliance.check import read_events as mllog_events
from tests.conftest import BERT_CPU_CONFIG, REPO, run_bash
from tests.slurm_cluster import NetnsSlurmCluster, SlurmCluster, missing_binaries, netns_unavailable
from tests.faults import EXIT_LIMIT_S, FAST, assert_aborted_and_complete, kill, record, strike_each_experiment

pytestmark = pytest.mark.slow


def require_slurm():
    missing = missing_binaries()
    if missing:
        reason = (f"SLURM not installed (missing {', '.join(missing)}; "
                  "apt-get install slurmd slurmctld slurm-client munge)")
        if os.environ.get("MLPERF_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)


def running(cluster):
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    return cluster


def stopped(cluster):
    cluster.stop()
    for pid in cluster.pids:
        assert not os.path.exists(f"/proc/{pid}"), f"SLURM/munge daemon {pid} still running"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    require_slurm()
    cluster = running(SlurmCluster(tmp_path_factory.mktemp("slurm")))
    yield cluster
    stopped(cluster)


@pytest.fixture(scope="module")
def slurm_two_nodes(tmp_path_factory):
    """Two SLURM nodes in their own network namespaces (tests/slurm_cluster.py's NetnsSlurmCluster)."""
    require_slurm()
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    cluster = running(NetnsSlurmCluster(tmp_path_factory.mktemp("slurm2")))
    yield cluster
    stopped(cluster)


def submit_run_sub(slurm, bench: str, data_dir, tmp_path, nexp: int, overrides: dict, **run_bash_args) -> str:
    """Submit BENCH/run.sub with sbatch; its job id."""
    proc = run_bash(f'sbatch --parsable -N "$DGXNNODES" -t "$WALLTIME" -o "{tmp_path}/slurm-%j.out" run.sub',
                    cwd=REPO / bench,
                    env={**slurm.env, "DATADIR": str(data_dir), "LOGDIR": str(tmp_path / "logs"),
                         "NEXP": str(nexp), "DATESTAMP": "slurm"},
                    overrides=overrides, **run_bash_args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def sbatch_run_sub(slurm, bench: str, data_dir, tmp_path, nexp: int, overrides: dict, **run_bash_args) -> str:
    """Submit BENCH/run.sub with sbatch, wait for it to complete, return the job's output."""
    job_id = submit_run_sub(slurm, bench, data_dir, tmp_path, nexp, overrides, **run_bash_args)
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


def test_sbatch_a_killed_task_ends_its_step_within_60_s_and_the_next_experiment_runs(slurm, synthetic_imagenet,
                                                                                    tmp_path):
    """srun --kill-on-bad-exit: rank 1 killed ends experiment 1's step; rank 0 killed ends experiment 2's, its log
    closed by the launcher; the job fails naming both."""
    logdir = tmp_path / "logs"
    job_id = submit_run_sub(slurm, "resnet50", synthetic_imagenet, tmp_path, 2,
                            {**FAST, "BATCHSIZE": "32", "DATALOADER_WORKERS": "1"})
    logs = [logdir / "slurm_1.log", logdir / "slurm_2.log"]
    took = strike_each_experiment(logs, [kill(1), kill(0)], "resnet50.train", logdir,
                                  lambda: not slurm.job_done(job_id))
    output = next(tmp_path.glob("slurm-*.out")).read_text()
    assert slurm.wait_for_job(job_id, timeout=60) == "FAILED", output[-3000:]
    for i, log in enumerate(logs, 1):
        assert f"experiment {i}: training failed ({log})" in output, output[-3000:]
        assert_aborted_and_complete(log)
    assert len(took) == 2 and max(took) < EXIT_LIMIT_S, took
    for i, (rank, seconds) in enumerate(zip((1, 0), took), 1):
        record(f"SIGKILL of rank {rank} mid-training", "resnet50", "sbatch run.sub (srun --kill-on-bad-exit)",
               seconds, logs[i - 1], f"job FAILED, `FAILED: experiment {i}: training failed (<log>)`")


def test_two_nodes_in_their_own_network_namespaces_run_4_ranks_then_survive_a_lost_node(
        slurm_two_nodes, synthetic_imagenet, tmp_path):
    """run.sub -N 2, 2 tasks a node: the master address comes from SLURM_JOB_NODELIST (node 2 reaches node 1 only
    through its veth), the 4-rank gloo run passes the checker; in the next experiment node 2's ranks are killed
    mid-run and the job ends within 60 s, the failure named."""
    logdir = tmp_path / "logs"
    job_id = submit_run_sub(slurm_two_nodes, "resnet50", synthetic_imagenet, tmp_path, 2,
                            {"DGXNNODES": "2", "DGXNGPU": "2", "BATCHSIZE": "16", "DATALOADER_WORKERS": "1"})
    logs = [logdir / "slurm_1.log", logdir / "slurm_2.log"]
    took = strike_each_experiment(logs, [None, kill(2, 3)], "resnet50.train", logdir,
                                  lambda: not slurm_two_nodes.job_done(job_id))
    output = next(tmp_path.glob("slurm-*.out")).read_text()
    assert slurm_two_nodes.wait_for_job(job_id, timeout=60) == "FAILED", output[-3000:]
    passed, checker_output = run_checker(logs[0])
    assert passed, checker_output
    events = mllog_events(logs[0])
    assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 64  # 2 nodes x 2 tasks x 16
    assert "experiment 1:" not in output and f"experiment 2: training failed ({logs[1]})" in output, output[-3000:]
    assert_aborted_and_complete(logs[1])
    assert len(took) == 1 and took[0] < EXIT_LIMIT_S, took
    record("SIGKILL of one node's ranks (2 of 4) mid-training", "resnet50",
           "sbatch run.sub -N 2 (network namespaces)", took[0], logs[1],
           "job FAILED, `FAILED: experiment 2: training failed (<log>)`; experiment 1 passed the checker")
