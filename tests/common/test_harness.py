"""The MLPerf run lifecycle: complete logs on success and on every way a run can abort."""
import os
import sys
import textwrap
from pathlib import Path

import pytest

from common.config import SystemConfig
from common.harness import Block, MLPerfRun, NonFiniteLoss, epoch_blocks, train_to_target
from common.mlperf_log import MLPerfLogger
from compliance.check import read_events
from tests.conftest import sigterm_when_seen

REPO = Path(__file__).resolve().parents[2]
SYSTEM = SystemConfig(system="TOY", nodes=1, gpus_per_node=1)


events = read_events


def run_toy(tmp_path, train_block, accuracies, num_epochs=8):
    log = tmp_path / "run.log"
    logger = MLPerfLogger(filename=log, stream=open(os.devnull, "w"))
    accuracy = iter(accuracies)
    with MLPerfRun(logger, "resnet", SYSTEM) as run:
        run.log_seed(7)
        run.start_timed_region()
        train_to_target(run, epoch_blocks(num_epochs, 4, 1), train_block,
                        lambda block: next(accuracy), lambda acc: acc >= 0.759)
    logger.close()
    return events(log)


def test_success_lifecycle_order_and_metadata(tmp_path):
    log = run_toy(tmp_path, lambda block: 10, [0.5, 0.8])
    keys = [e["key"] for e in log]
    for before, after in [("init_start", "submission_org"), ("submission_platform", "init_stop"),
                          ("seed", "init_stop"), ("init_stop", "run_start"), ("run_start", "block_start")]:
        assert keys.index(before) < keys.index(after)
    assert keys[-1] == "run_stop" and log[-1]["metadata"]["status"] == "success"
    blocks = [e["metadata"] for e in log if e["key"] == "block_start"]
    assert blocks == [{"file": blocks[0]["file"], "lineno": blocks[0]["lineno"], "first_epoch_num": 1, "epoch_count": 2},
                      {"file": blocks[1]["file"], "lineno": blocks[1]["lineno"], "first_epoch_num": 3, "epoch_count": 4}]
    assert [e["metadata"]["epoch_num"] for e in log if e["key"] == "eval_accuracy"] == [2, 6]
    # file/lineno point at the caller, not at the logging layer
    seed = next(e for e in log if e["key"] == "seed")
    assert seed["metadata"]["file"] == "tests/common/test_harness.py"


def test_out_of_epochs_is_aborted(tmp_path):
    log = run_toy(tmp_path, lambda block: 10, [0.1, 0.2])
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "aborted"


def test_exception_is_aborted_and_propagates(tmp_path):
    def explode(block):
        raise RuntimeError("data shard unreadable")
    with pytest.raises(RuntimeError, match="unreadable"):
        run_toy(tmp_path, explode, [])
    log = events(tmp_path / "run.log")
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "aborted"


def test_non_finite_loss_is_aborted(tmp_path):
    def nan(block):
        raise NonFiniteLoss("loss is nan")
    with pytest.raises(NonFiniteLoss):
        run_toy(tmp_path, nan, [])
    assert events(tmp_path / "run.log")[-1]["metadata"]["status"] == "aborted"


def test_rank_nonzero_logs_nothing(tmp_path):
    log = tmp_path / "rank1.log"
    logger = MLPerfLogger(rank=1, filename=log)
    logger.event("seed", 1)
    assert not log.exists() or log.read_text() == ""


def test_epoch_blocks_follow_the_eval_offset():
    # NVIDIA's 1x8x400 config: offset 2, evals at 3, 7, ..., 35 within 37 epochs
    blocks = epoch_blocks(37, 4, 2)
    assert blocks[0] == Block(1, 3) and blocks[-1] == Block(32, 4)
    assert [b.last_epoch for b in blocks] == list(range(3, 36, 4))
    with pytest.raises(ValueError):
        epoch_blocks(10, 4, 4)


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    from common.config import SystemConfig
    from common.harness import MLPerfRun, epoch_blocks, train_to_target
    from common.mlperf_log import MLPerfLogger
    logger = MLPerfLogger(filename=sys.argv[1])
    with MLPerfRun(logger, "resnet", SystemConfig(system="TOY", nodes=1, gpus_per_node=1)) as run:
        run.start_timed_region()
        def train(block):
            print("training", flush=True)
            time.sleep(60)
            return 1
        train_to_target(run, epoch_blocks(8, 4, 0), train, lambda b: 0.0, lambda a: False)
""")


def test_sigterm_mid_training_is_aborted_with_a_flushed_log(tmp_path):
    log = tmp_path / "sigterm.log"
    # MLLOG lines come first, then the trainer's first print
    returncode = sigterm_when_seen([sys.executable, "-c", SIGTERM_SCRIPT, str(log)],
                                   lambda line: line.strip() == "training", timeout=30)
    assert returncode != 0
    last = events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"
