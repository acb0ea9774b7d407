"""End-to-end CPU runs of RetinaNet on the synthetic OpenImages-layout set (minutes)."""
import subprocess
import sys

import pytest

from compliance.check import read_events, run_checker, summarize
from retinanet.synthetic import SyntheticSpec, synthesize
from tests.conftest import REPO, RETINANET_CPU_CONFIG, config_env

pytestmark = pytest.mark.slow


def test_cpu_smoke_run_reaches_the_target_and_passes_the_checker(retinanet_smoke):
    proc, log = retinanet_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, output = run_checker(log)
    assert passed, output
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("ssd", "success", True)
    events = read_events(log)
    maps = [e["value"] for e in events if e["key"] == "eval_accuracy"]
    assert 0.34 <= maps[-1] < 1.0 and all(m < 0.34 for m in maps[:-1])
    value = {e["key"]: e["value"] for e in events}
    assert (value["train_samples"], value["eval_samples"]) == (384, 96)  # images, the RCP's unit
    assert value["opt_learning_rate_warmup_factor"] == 1e-3 and value["opt_weight_decay"] == 0.0
    assert "RESULT,ssd," in proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("retinanet-tiny")
    synthesize(root, SyntheticSpec(train_images=32, val_images=8, pretrain_steps=2))
    return root


def one_epoch(root, tmp_path, nproc, batch):
    log = tmp_path / f"run_{nproc}.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    proc = subprocess.run([*cmd, "-m", "retinanet.train", "--data-dir", str(root), "--seed", "4",
                           "--log-file", str(log)], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=config_env(RETINANET_CPU_CONFIG, NUMEPOCHS="1", BATCHSIZE=str(batch),
                                         DGXNGPU=str(nproc), DATALOADER_WORKERS="0"))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]  # one epoch, far from the target
    events = read_events(log)
    loss = next(e["value"]["train_loss"] for e in events if e["key"] == "tracked_stats")
    return loss, next(e["value"] for e in events if e["key"] == "eval_accuracy"), events


def test_two_gloo_processes_train_and_score_like_one_on_the_same_global_batch(tiny, tmp_path):
    loss_one, map_one, _ = one_epoch(tiny, tmp_path, 1, 8)
    loss_two, map_two, events = one_epoch(tiny, tmp_path, 2, 4)
    assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 8
    assert loss_two == pytest.approx(loss_one, rel=1e-4)  # same images, same flips, gradients averaged
    assert map_two == pytest.approx(map_one, abs=1e-3)  # detections of both shards scored together


def test_a_data_dir_without_a_backbone_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "retinanet.train", "--data-dir", str(tmp_path)], cwd=REPO,
                          env=config_env(RETINANET_CPU_CONFIG), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"expected exactly one {tmp_path}/backbone/*.pth" in proc.stderr
