"""End-to-end CPU runs of Mask R-CNN on the synthetic COCO 2017-layout set (minutes)."""
import subprocess
import sys

import pytest

from compliance.check import read_events, run_checker, summarize
from maskrcnn.synthetic import SyntheticSpec, synthesize
from tests.conftest import MASKRCNN_CPU_CONFIG, REPO, config_env

pytestmark = pytest.mark.slow


def test_cpu_smoke_run_reaches_both_targets_and_passes_the_checker(maskrcnn_smoke):
    proc, log = maskrcnn_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, output = run_checker(log)
    assert passed, output
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("maskrcnn", "success", True)
    events = read_events(log)
    scores = [e["value"] for e in events if e["key"] == "eval_accuracy"]
    assert scores[-1]["BBOX"] >= 0.377 and scores[-1]["SEGM"] >= 0.339
    assert not any(s["BBOX"] >= 0.377 and s["SEGM"] >= 0.339 for s in scores[:-1])  # stopped at the first
    value = {e["key"]: e["value"] for e in events}
    assert (value["train_samples"], value["eval_samples"]) == (191, 32)  # images (one has no annotation)
    assert value["opt_learning_rate_decay_steps"] == [800, 900] and value["num_image_candidates"] == 1000
    assert "RESULT,maskrcnn," in proc.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """32 images of one size (80 x 80): batches pad alike however they are split, so ranks compute alike."""
    root = tmp_path_factory.mktemp("maskrcnn-tiny")
    synthesize(root, SyntheticSpec(train_images=33, val_images=8, min_side=80, max_side=80, pretrain_steps=2))
    return root


def one_epoch(root, tmp_path, nproc, batch):
    log = tmp_path / f"run_{nproc}.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    proc = subprocess.run([*cmd, "-m", "maskrcnn.train", "--data-dir", str(root), "--seed", "4",
                           "--log-file", str(log)], cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=config_env(MASKRCNN_CPU_CONFIG, NUMEPOCHS="1", BATCHSIZE=str(batch), EVALBATCHSIZE="4",
                                         DGXNGPU=str(nproc), DATALOADER_WORKERS="0", CANDIDATES_PER_IMAGE="1",
                                         WARMUP_ITERS="4", WARMUP_FACTOR="0.0025"))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]  # one epoch, far from the targets
    events = read_events(log)
    losses = [e["value"]["train_loss"] for e in events if e["key"] == "tracked_stats"]
    return losses[0], next(e["value"] for e in events if e["key"] == "eval_accuracy"), events


def test_two_gloo_processes_train_like_one_on_the_same_global_batch(tiny, tmp_path):
    loss_one, _, _ = one_epoch(tiny, tmp_path, 1, 8)
    loss_two, scores, events = one_epoch(tiny, tmp_path, 2, 4)
    assert next(e["value"] for e in events if e["key"] == "global_batch_size") == 8
    # The same images and flips, gradients averaged. Measured: 2e-4 apart (the mask loss is a mean over each
    # rank's positive RoIs, so two ranks weigh them slightly differently from one process); with the sampler
    # not sharding (each rank reading the whole set) it was 22% apart. Per-image sampling is tested in
    # test_model, the two-rank gather and scoring in test_evaluate (this short run scores about 0).
    assert loss_two == pytest.approx(loss_one, rel=2e-3)
    assert set(scores) == {"BBOX", "SEGM"}


def test_a_data_dir_without_a_backbone_is_named(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maskrcnn.train", "--data-dir", str(tmp_path)], cwd=REPO,
                          env=config_env(MASKRCNN_CPU_CONFIG), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"expected exactly one {tmp_path}/backbone/*.pth" in proc.stderr
