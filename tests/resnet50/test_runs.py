"""End-to-end CPU runs of the real ResNet-50 through run_and_time.sh (minutes)."""
import os
import subprocess
import sys
import time

import pytest

from common.config import ConfigError
from compliance.check import read_events as mllog_events
from compliance.check import run_checker, summarize
from resnet50 import train
from tests.conftest import REPO, RESNET_CPU_CONFIG, config_env, run_bash, sigterm_when_seen
from tests.faults import record

pytestmark = pytest.mark.slow


def accuracies(log):
    return [e["value"] for e in mllog_events(log) if e["key"] == "eval_accuracy"]


def test_cpu_runs_reach_the_target_and_pass_the_compliance_checker(resnet_cpu_experiments):
    proc, logs = resnet_cpu_experiments
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(logs) == 2  # NEXP experiments back to back, each checked
    for log in logs:
        passed, output = run_checker(log)
        assert passed, output
        run = summarize(log)
        assert (run.benchmark, run.status, run.synthetic) == ("resnet", "success", True)
        assert 0.759 <= accuracies(log)[-1] < 1.0
        text = log.read_text()
        assert "RESULT,resnet," in text
        # the page cache dropped before each experiment (as root; otherwise the loop warns and logs false)
        cleared = "true" if os.geteuid() == 0 else "false"
        assert f'"key": "cache_clear", "value": {cleared}' in text
    assert len({summarize(log).seed for log in logs}) == 2


def test_two_process_torchrun_gloo_run_logs_from_rank_0_only(synthetic_imagenet, tmp_path):
    proc = run_bash("cd resnet50 && ../common/run_local.sh",
                    env={"DATADIR": str(synthetic_imagenet), "LOGDIR": str(tmp_path), "NEXP": "1",
                         "DATESTAMP": "torchrun"},
                    overrides={"DGXNGPU": "2", "BATCHSIZE": "32"})
    log = tmp_path / "torchrun_1.log"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    events = mllog_events(log)
    assert [e["key"] for e in events].count("init_start") == 1  # rank 1 is silent
    assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 64
    assert next(e["value"] for e in events if e["key"] == "model_bn_span") == 32  # 2 processes x 32
    passed, output = run_checker(log)
    assert passed, output


def _train_env(**overrides):
    return config_env(RESNET_CPU_CONFIG, **overrides)


def test_sigterm_mid_training_ends_the_log_with_run_stop_aborted(synthetic_imagenet, tmp_path):
    log = tmp_path / "sigterm.log"
    returncode = sigterm_when_seen([sys.executable, "-m", "resnet50.train", "--data-dir", str(synthetic_imagenet),
                                    "--seed", "11", "--log-file", str(log)],
                                   lambda line: '"key": "block_start"' in line, env=_train_env())
    assert returncode != 0
    last = mllog_events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_non_finite_loss_aborts_with_a_complete_log(synthetic_imagenet, tmp_path):
    log = tmp_path / "nan.log"
    proc = subprocess.run([sys.executable, "-m", "resnet50.train", "--data-dir", str(synthetic_imagenet),
                           "--seed", "12", "--log-file", str(log)],
                          cwd=REPO, env=_train_env(LR="1e30"), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "NonFiniteLoss" in proc.stderr + proc.stdout
    last = mllog_events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_missing_config_variable_is_named_with_the_file(tmp_path, synthetic_imagenet):
    config = tmp_path / "config_BROKEN_1x1x8x1.sh"
    text = RESNET_CPU_CONFIG.read_text().replace("export LR=6.0\n", "")
    config.write_text(text)
    with pytest.raises(ConfigError, match=rf"{config}: required variable LR is not set"):
        train.main(["--data-dir", str(synthetic_imagenet), "--config", str(config)])


def test_an_unwritable_logdir_fails_before_any_training_naming_it(tmp_path, synthetic_imagenet):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    start = time.monotonic()
    proc = run_bash("cd resnet50 && ../common/run_local.sh",
                    env={"DATADIR": str(synthetic_imagenet), "LOGDIR": str(blocker / "logs"), "NEXP": "2"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"LOGDIR={blocker}/logs: not a writable directory" in proc.stderr
    assert "Beginning trial" not in proc.stdout
    record("LOGDIR not writable", "resnet50", "torchrun (run_local.sh)", time.monotonic() - start, None,
           "`LOGDIR=<path>: not a writable directory; ...`, exit 2, before any training")


def test_an_unwritable_log_file_is_named(tmp_path, synthetic_imagenet):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OSError, match=rf"{blocker}/run.log: cannot write the MLPerf log there"):
        train.main(["--data-dir", str(synthetic_imagenet), "--config", str(RESNET_CPU_CONFIG),
                    "--log-file", str(blocker / "run.log")])
