"""The MLPerf run lifecycle and the train-to-target loop: complete logs on success and on every way a run can abort."""
import argparse
import contextlib
import io
import itertools
import os
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from common import schedule
from common.config import SystemConfig, env_field
from common.harness import MLPerfRun, NonFiniteLoss, train_to_target
from common.mlperf_log import MLPerfLogger
from common.precision import Precision
from common.session import RunPlan, Session
from common.step import TrainStep
from common.synthetic import write_marker
from compliance.check import read_events
from tests.conftest import sigterm_when_seen

SYSTEM = SystemConfig(system="TOY", nodes=1, gpus_per_node=1)
CPU = torch.device("cpu")
events = read_events


def toy_step(loss=None, steps_per_batch=4):
    """A real TrainStep on a one-weight model; `loss(model, batch)` replaces the default quadratic loss."""
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = loss or (lambda m, batch: (m(batch) ** 2).mean())
    step = TrainStep(model, optimizer, lambda batch: loss(model, batch), precision=Precision("fp32", "cpu"),
                     device=CPU, count=len)
    return model, step, itertools.repeat(torch.ones(steps_per_batch, 2))


def run_toy(tmp_path, accuracies, loss=None, blocks=None, reached=lambda acc: acc >= 0.759, stop_after_evals=0):
    log = tmp_path / "run.log"
    logger = MLPerfLogger(filename=log, stream=open(os.devnull, "w"))
    accuracy = iter(accuracies)
    _, step, batches = toy_step(loss)
    with MLPerfRun(logger, "resnet", SYSTEM) as run:
        run.log_seed(7)
        run.start_timed_region()
        train_to_target(run, blocks or schedule.every_n_epochs(8, 3, period=4, offset=1), step, batches,
                        lambda: next(accuracy), reached, stop_after_evals=stop_after_evals)
    logger.close()
    return events(log)


def test_success_lifecycle_order_and_metadata(tmp_path):
    log = run_toy(tmp_path, [0.5, 0.8])
    keys = [e["key"] for e in log]
    for before, after in [("init_start", "submission_org"), ("submission_platform", "init_stop"),
                          ("seed", "init_stop"), ("init_stop", "run_start"), ("run_start", "block_start")]:
        assert keys.index(before) < keys.index(after)
    assert keys[-1] == "run_stop" and log[-1]["metadata"]["status"] == "success"
    blocks = [(e["metadata"]["first_epoch_num"], e["metadata"]["epoch_count"]) for e in log
              if e["key"] == "block_start"]
    assert blocks == [(1, 2), (3, 4)]
    assert [e["metadata"]["epoch_num"] for e in log if e["key"] == "eval_accuracy"] == [2, 6]
    # 3 steps per epoch x 4 samples: the throughput line counts what was trained
    stats = [e for e in log if e["key"] == "tracked_stats"]
    assert stats[0]["value"]["throughput"] > 0 and "train_loss" in stats[0]["value"]
    # file/lineno point at the caller, not at the logging layer
    seed = next(e for e in log if e["key"] == "seed")
    assert seed["metadata"]["file"] == "tests/common/test_harness.py"
    assert next(e for e in log if e["key"] == "block_start")["metadata"]["file"] == "common/harness.py"


def test_the_loop_trains_each_block_up_to_its_step_then_evaluates_in_eval_mode_without_gradients(tmp_path):
    model, step, batches = toy_step()
    seen = []

    def evaluate():
        seen.append((step.steps, model.training, torch.is_grad_enabled()))
        return 0.0

    logger = MLPerfLogger(stream=open(os.devnull, "w"))
    with MLPerfRun(logger, "resnet", SYSTEM) as run:
        run.start_timed_region()
        assert not train_to_target(run, schedule.every_n_epochs(8, 3, period=4, offset=1), step, batches, evaluate,
                                   lambda acc: False)
    assert seen == [(6, False, False), (18, False, False)]  # epochs 2 and 6 of 3 steps each
    assert step.monitor.samples_trained == 18 * 4


def test_out_of_epochs_is_aborted(tmp_path):
    log = run_toy(tmp_path, [0.1, 0.2])
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "aborted"


@pytest.mark.parametrize("stop_after", [1, 2])
def test_stop_after_evals_ends_the_run_aborted_after_that_many_evaluations(tmp_path, stop_after):
    blocks = schedule.every_n_epochs(16, 3, period=2)  # 8 evaluations, none reaching the target
    log = run_toy(tmp_path, [0.1] * 8, blocks=blocks, stop_after_evals=stop_after)
    assert [e["key"] for e in log].count("eval_accuracy") == stop_after
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "aborted"
    (tmp_path / "unlimited").mkdir()
    assert [e["key"] for e in run_toy(tmp_path / "unlimited", [0.1] * 8, blocks=blocks)].count("eval_accuracy") == 8


def test_exception_is_aborted_and_propagates(tmp_path):
    def explode(model, batch):
        raise RuntimeError("data shard unreadable")
    with pytest.raises(RuntimeError, match="unreadable"):
        run_toy(tmp_path, [], loss=explode)
    log = events(tmp_path / "run.log")
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "aborted"


def test_non_finite_loss_is_aborted(tmp_path):
    with pytest.raises(NonFiniteLoss):
        run_toy(tmp_path, [], loss=lambda model, batch: model(batch).sum() * float("nan"))
    assert events(tmp_path / "run.log")[-1]["metadata"]["status"] == "aborted"


def test_a_diverged_model_ends_the_run_aborted_at_that_evaluation(tmp_path):
    log = tmp_path / "run.log"
    logger = MLPerfLogger(filename=log, stream=open(os.devnull, "w"))
    _, step, batches = toy_step()
    accuracy = iter([0.3, 1e-7, 0.95])
    with MLPerfRun(logger, "unet3d", SYSTEM) as run:
        run.start_timed_region()
        assert not train_to_target(run, schedule.every_n_epochs(3, 2), step, batches, lambda: next(accuracy),
                                   lambda d: d >= 0.908, diverged=lambda d: d < 1e-6)
    logger.close()
    logged = events(log)
    assert [e["value"] for e in logged if e["key"] == "eval_accuracy"] == [0.3, 1e-7]
    assert logged[-1]["key"] == "run_stop" and logged[-1]["metadata"]["status"] == "aborted"


def test_a_dict_quality_is_logged_whole_and_succeeds_only_when_the_predicate_says_so(tmp_path):
    both = lambda q: q["BBOX"] >= 0.377 and q["SEGM"] >= 0.339  # noqa: E731
    log = run_toy(tmp_path, [{"BBOX": 0.40, "SEGM": 0.30}, {"BBOX": 0.38, "SEGM": 0.34}], reached=both,
                  blocks=schedule.every_n_epochs(3, 2))
    accuracy = [e["value"] for e in log if e["key"] == "eval_accuracy"]
    assert accuracy == [{"BBOX": 0.40, "SEGM": 0.30}, {"BBOX": 0.38, "SEGM": 0.34}]  # one reached is not success
    assert log[-1]["metadata"]["status"] == "success"


def test_blocks_without_evaluation_log_their_block_and_throughput_only(tmp_path):
    log = run_toy(tmp_path, [0.9], blocks=schedule.from_epoch(start=4, every=2, max_epochs=4, steps_per_epoch=1))
    assert [(e["metadata"]["first_epoch_num"], e["metadata"]["epoch_count"]) for e in log
            if e["key"] == "block_start"] == [(1, 2), (3, 2)]
    assert [e["metadata"]["epoch_num"] for e in log if e["key"] == "eval_accuracy"] == [4]
    assert [e["key"] for e in log].count("tracked_stats") == 2


def test_rank_nonzero_logs_nothing(tmp_path):
    log = tmp_path / "rank1.log"
    logger = MLPerfLogger(rank=1, filename=log)
    logger.event("seed", 1)
    assert not log.exists() or log.read_text() == ""


@dataclass(frozen=True)
class ToyConfig:
    lr: float = env_field("LR", "learning rate")


def session_run(tmp_path, synthetic: bool, fail: bool = False):
    config = tmp_path / "config_TOY_1x1x4x1.sh"
    config.write_text("export DGXSYSTEM=TOY_1x1x4x1\nexport DGXNNODES=1\nexport DGXNGPU=1\nexport LR=0.1\n"
                      "export DEVICE=cpu\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if synthetic:
        write_marker(data_dir, {"toy": 1})
    log = tmp_path / "session.log"
    args = argparse.Namespace(config=config, data_dir=data_dir, seed=5, log_file=log)
    loss = (lambda m, b: m(b).sum() * float("nan")) if fail else None
    with pytest.raises(NonFiniteLoss) if fail else contextlib.nullcontext():
        with Session("resnet", args, ToyConfig) as s:
            _, step, batches = toy_step(loss)
            plan = RunPlan(hyperparameters={"global_batch_size": 4, "opt_base_learning_rate": s.cfg.lr},
                           schedule=schedule.every_n_epochs(4, 2), eval_samples=3, train_samples=None,
                           samples_per_step=4, reached=lambda a: a > 0.7, target=0.8, untrained=0.0)
            s.train_to_target(plan, step, batches, lambda: 0.8)
    return s, {e["key"]: e for e in events(log)}


def test_session_logs_the_data_keys_itself_so_no_benchmark_can_forget_them(tmp_path):
    s, logged = session_run(tmp_path, synthetic=True)
    assert s.exit_code == 0 and logged["run_stop"]["metadata"]["status"] == "success"
    assert logged["data_synthetic"]["value"] is True and logged["eval_samples"]["value"] == 3
    assert logged["train_samples"]["value"] == 2 * 4  # not given: the samples trained (1 epoch of 2 steps x 4)
    assert logged["seed"]["value"] == 5 and logged["opt_base_learning_rate"]["value"] == 0.1


def test_session_on_real_data_logs_data_synthetic_false_and_train_samples_even_when_aborted(tmp_path):
    s, logged = session_run(tmp_path, synthetic=False, fail=True)
    assert s.exit_code == 1 and logged["run_stop"]["metadata"]["status"] == "aborted"
    assert logged["data_synthetic"]["value"] is False and "train_samples" in logged


SIGTERM_SCRIPT = textwrap.dedent("""
    import itertools, sys, time
    import torch
    from common import schedule
    from common.config import SystemConfig
    from common.harness import MLPerfRun, train_to_target
    from common.mlperf_log import MLPerfLogger
    from common.precision import Precision
    from common.step import TrainStep
    model = torch.nn.Linear(1, 1)
    def slow(batch):
        print("training", flush=True)
        time.sleep(60)
        return model(batch).sum()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), slow, precision=Precision("fp32", "cpu"),
                     device=torch.device("cpu"), count=len)
    logger = MLPerfLogger(filename=sys.argv[1])
    with MLPerfRun(logger, "resnet", SystemConfig(system="TOY", nodes=1, gpus_per_node=1)) as run:
        run.start_timed_region()
        train_to_target(run, schedule.every_n_epochs(8, 1, 4, 0), step, itertools.repeat(torch.ones(1, 1)),
                        lambda: 0.0, lambda a: False)
""")


def test_sigterm_mid_training_is_aborted_with_a_flushed_log(tmp_path):
    log = tmp_path / "sigterm.log"
    # MLLOG lines come first, then the step's first print
    returncode = sigterm_when_seen([sys.executable, "-c", SIGTERM_SCRIPT, str(log)],
                                   lambda line: line.strip() == "training", timeout=30)
    assert returncode != 0
    last = events(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_each_logger_writes_only_its_own_file_however_many_came_before(tmp_path):
    from common.mlperf_log import MLPerfLogger

    for i in range(50):  # loggers dropped without close(): a reused name would carry their handlers
        MLPerfLogger(filename=tmp_path / f"{i}.log", stream=io.StringIO()).event("k", i)
    for i in range(50):
        assert [e["value"] for e in events(tmp_path / f"{i}.log")] == [i]
