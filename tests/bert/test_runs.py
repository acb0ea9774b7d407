"""End-to-end CPU runs of BERT phase 2 from the synthetic phase-1 checkpoint (minutes)."""
import subprocess
import sys

import pytest

from compliance.check import read_events as mllog_events
from compliance.check import run_checker, summarize
from tests.conftest import BERT_CPU_CONFIG, REPO, config_env, run_bash

pytestmark = pytest.mark.slow


def value(events, key):
    return next(e["value"] for e in events if e["key"] == key)


def test_cpu_smoke_run_reaches_the_target_from_its_checkpoint_and_passes_the_checker(bert_synthetic, bert_smoke):
    proc, log = bert_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, output = run_checker(log)
    assert passed, output
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("bert", "success", True)
    events = mllog_events(log)
    accuracies = [e["value"] for e in events if e["key"] == "eval_accuracy"]
    assert 0.720 <= accuracies[-1] < 1.0 and all(a < 0.720 for a in accuracies[:-1])
    assert accuracies[0] < 0.5  # the phase-1 checkpoint is a starting point, not a finished model
    assert value(events, "init_checkpoint").startswith(str(bert_synthetic / "phase1" / "model.ckpt-"))
    assert value(events, "global_batch_size") == 64 and value(events, "eval_samples") == 2000
    epochs = [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"]
    assert epochs == sorted(epochs) and value(events, "train_samples") == epochs[-1]
    assert "RESULT,bert," in proc.stdout


def test_two_process_gloo_run_trains_and_evaluates_across_both_ranks(bert_synthetic, tmp_path):
    proc = run_bash("cd bert && ../common/run_local.sh", config=BERT_CPU_CONFIG,
                    env={"DATADIR": str(bert_synthetic), "LOGDIR": str(tmp_path), "NEXP": "1",
                         "DATESTAMP": "torchrun"},
                    overrides={"DGXNGPU": "2", "BATCHSIZE": "16"})
    log = tmp_path / "torchrun_1.log"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    events = mllog_events(log)
    assert [e["key"] for e in events].count("init_start") == 1  # rank 1 is silent
    assert value(events, "global_batch_size") == 64  # 2 processes x 16 rows x packing factor 2
    # each rank evaluates half of the eval file; evaluate() checks the sum is the whole file
    assert value(events, "eval_samples") == 2000
    passed, output = run_checker(log)
    assert passed, output


def test_non_finite_loss_aborts_with_a_complete_log(bert_synthetic, tmp_path):
    log = tmp_path / "nan.log"
    proc = subprocess.run([sys.executable, "-m", "bert.train", "--data-dir", str(bert_synthetic),
                           "--seed", "3", "--log-file", str(log)],
                          cwd=REPO, env=config_env(BERT_CPU_CONFIG, LR="1e30"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0
    assert "NonFiniteLoss" in proc.stderr + proc.stdout
    last = mllog_events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_a_data_dir_without_a_phase1_checkpoint_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bert.train", "--data-dir", str(tmp_path)],
                          cwd=REPO, env=config_env(BERT_CPU_CONFIG), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert f"expected exactly one {tmp_path}/phase1/model.ckpt-*.pt" in proc.stderr
