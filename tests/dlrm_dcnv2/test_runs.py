"""End-to-end CPU runs of DLRM-DCNv2 on the synthetic dataset (about a minute each)."""
import subprocess
import sys

import pytest

from compliance.check import main as check_main
from compliance.check import SYNTHETIC_WAIVERS, only_waived_keys_fail, read_events, run_checker, summarize
from tests.conftest import DLRM_CPU_CONFIG, REPO, config_env

pytestmark = pytest.mark.slow


def test_cpu_smoke_run_reaches_the_target_and_the_checker_objects_to_eval_samples_alone(dlrm_smoke, tmp_path):
    proc, log = dlrm_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("dlrm_dcnv2", "success", True)
    events = read_events(log)
    aucs = [e["value"] for e in events if e["key"] == "eval_accuracy"]
    assert 0.80275 <= aucs[-1] < 1.0 and all(a < 0.80275 for a in aucs[:-1]) and aucs[0] < 0.75
    epochs = [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"]
    assert epochs == sorted(epochs) and 0 < epochs[-1] <= 1.0  # a fraction of the one epoch
    assert epochs[0] == 8 / 184  # evaluation 1 after step 9 of 184, labelled (step - 1) / steps as NVIDIA
    value = {e["key"]: e["value"] for e in events}
    assert value["eval_samples"] == 65_536 and value["train_samples"] == 23 * 16_384
    assert value["global_batch_size"] == 2048 and value["opt_name"] == "adagrad"
    # The official checker fails the log on the validation-set size, and on nothing else:
    passed, output = run_checker(log)
    assert not passed and "v['value'] == 89137319" in output
    assert only_waived_keys_fail(log, run) == {"eval_samples": 65_536}
    assert SYNTHETIC_WAIVERS["dlrm_dcnv2"] == {"eval_samples": 89_137_319}
    assert "SUCCESS except the waived synthetic-data rule(s) eval_samples=65536 (rules: 89137319)" in proc.stdout
    assert "RESULT,dlrm_dcnv2,7," in proc.stdout
    # ... and the waiver holds for nothing else: not for real data, not for a second failing rule.
    text = log.read_text()
    real = tmp_path / "real.log"
    real.write_text(text.replace('"key": "data_synthetic", "value": true', '"key": "data_synthetic", "value": false'))
    assert not summarize(real).synthetic and only_waived_keys_fail(real, summarize(real)) == {}
    assert check_main([str(real)]) == 1
    second = tmp_path / "second.log"
    second.write_text("\n".join(line for line in text.splitlines() if '"key": "opt_name"' not in line) + "\n")
    assert only_waived_keys_fail(second, summarize(second)) == {}


def test_non_finite_loss_aborts_with_a_complete_log(dlrm_tiny, tmp_path):
    log = tmp_path / "nan.log"
    proc = subprocess.run([sys.executable, "-m", "dlrm_dcnv2.train", "--data-dir", str(dlrm_tiny), "--seed", "3",
                           "--log-file", str(log)],
                          cwd=REPO, env=config_env(DLRM_CPU_CONFIG, LEARNING_RATE="1e30", BATCHSIZE="128"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "NonFiniteLoss" in proc.stderr + proc.stdout
    last = read_events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_a_missing_day_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dlrm_dcnv2.train", "--data-dir", str(tmp_path)],
                          cwd=REPO, env=config_env(DLRM_CPU_CONFIG), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"DataError: {tmp_path}/day_0_labels.npy: missing" in proc.stderr
