"""End-to-end CPU runs of RNN-T on the synthetic LibriSpeech-layout set (a minute or two each)."""
import pytest

from compliance.check import read_events, run_checker, summarize
from tests.conftest import RNNT_CPU_CONFIG, package_dry_run, reseeded_copies, train_one_epoch

pytestmark = pytest.mark.slow


def test_cpu_smoke_run_reaches_the_target_and_passes_the_checker(rnnt_smoke):
    proc, log = rnnt_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, output = run_checker(log)
    assert passed, output
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("rnnt", "success", True)
    events = read_events(log)
    wer = [e["value"] for e in events if e["key"] == "eval_accuracy"]
    assert 0 < wer[-1] <= 0.058 and all(w > 0.058 for w in wer[:-1])
    value = {e["key"]: e["value"] for e in events}
    # 2,047 utterances of at most 16.7 s (the synthetic set's 17 s one dropped) in global batches of 16
    assert (value["train_samples"], value["eval_samples"], value["global_batch_size"]) == (2032, 2703, 16)
    assert (value["model_eval_ema_factor"], value["opt_lamb_learning_rate_min"]) == (0.9, 1e-5)
    assert "RESULT,rnnt," in proc.stdout


def one_epoch(root, tmp_path, nproc, batch):
    events = train_one_epoch("rnnt.train", RNNT_CPU_CONFIG, root, tmp_path / f"run_{nproc}.log", nproc,
                             EPOCH="1", BATCHSIZE=str(batch))
    return next(e["value"]["train_loss"] for e in events if e["key"] == "tracked_stats"), events


def test_two_gloo_processes_train_on_the_same_global_batches_as_one(rnnt_synthetic, tmp_path):
    loss_one, _ = one_epoch(rnnt_synthetic, tmp_path, 1, 16)
    loss_two, events = one_epoch(rnnt_synthetic, tmp_path, 2, 8)
    value = {e["key"]: e["value"] for e in events}
    assert (value["global_batch_size"], value["train_samples"], value["eval_samples"]) == (16, 2032, 2703)
    assert [e["key"] for e in events].count("eval_accuracy") == 1
    # Not equal: dropout, dither and SpecAugment draw from each process's own generator (as the reference's seed +
    # rank), so 2 x 8 utterances get other masks than 16 in one process. This checks that two gloo processes train
    # as far as one in an epoch (the mean loss falls from ~20 at the start); which utterances each rank reads is
    # tests/rnnt/test_data.py's sampler test, the exact WER summed over ranks tests/rnnt/test_evaluate.py's.
    assert loss_two == pytest.approx(loss_one, rel=0.05)


def test_ten_runs_package_as_result_0_to_9(rnnt_smoke, tmp_path):
    _, log = rnnt_smoke
    logs = reseeded_copies([log], 10, tmp_path / "logs")  # 10 real CPU runs would take 20 minutes
    names, impl = package_dry_run("rnnt", logs, tmp_path / "out")
    assert names == [f"result_{i}.txt" for i in range(10)]
    assert (impl / "rnnt" / "train.py").is_file() and (impl / "common" / "harness.py").is_file()
