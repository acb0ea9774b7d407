"""The MLPerf run lifecycle and the train-until-target loop.

`MLPerfRun` owns the lifecycle events: `init_start` when entered, the
submission block, `init_stop`/`run_start` when the timed region begins, and
`run_stop` when it is left. Once `run_start` is logged, leaving the block any
way but through `succeed()` — an exception, a non-finite loss, SIGTERM (what
SLURM sends at the time limit) or running out of epochs — logs `run_stop`
with status `aborted`, and the log is flushed before the exception goes on.
That holds for the logging process (rank 0); when another rank dies, its
launcher ends the others (torchrun does; run.sub uses srun --kill-on-bad-exit),
which reach rank 0 as SIGTERM.

`train_to_target` runs the evaluation schedule (`common.schedule`): each block
trains with the benchmark's `TrainStep` up to the block's step, logs the
block's throughput, then evaluates (in eval mode, without gradients, under the
run's precision) and stops at the quality target. A quality value is a float
or, for benchmarks with several metrics (maskrcnn), a dict of floats; the
benchmark's `reached` predicate decides.
"""
from __future__ import annotations

import signal
import time
from typing import Callable, Iterator, Mapping, Sequence, Union

import torch

from common.config import SystemConfig
from common.mlperf_log import MLPerfLogger, constants
from common.schedule import Block
from common.step import DataExhausted, NonFiniteLoss, TrainStep

__all__ = ["MLPerfRun", "RunTerminated", "NonFiniteLoss", "DataExhausted", "train_to_target", "format_quality"]

Quality = Union[float, Mapping[str, float]]


class RunTerminated(BaseException):
    """SIGTERM arrived (SLURM time limit, scancel, torchrun shutting down).

    A BaseException so that no `except Exception` on the way can swallow it.
    """


class MLPerfRun:
    """Context manager for one MLPerf run; see the module docstring."""

    def __init__(self, logger: MLPerfLogger, benchmark: str, system: SystemConfig):
        self.logger = logger
        self.benchmark = benchmark
        self.system = system
        self.run_started = False
        self.status = constants.ABORTED
        self._previous_sigterm = None
        self._before_stop: list[Callable[[], None]] = []

    def __enter__(self) -> "MLPerfRun":
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        self.logger.start(constants.INIT_START, depth=1)
        self.logger.events({
            constants.SUBMISSION_BENCHMARK: self.benchmark,
            constants.SUBMISSION_ORG: self.system.org,
            constants.SUBMISSION_DIVISION: self.system.division,
            constants.SUBMISSION_STATUS: self.system.status,
            constants.SUBMISSION_PLATFORM: self.system.submission_platform,
        }, depth=1)
        return self

    @staticmethod
    def _on_sigterm(signum, frame):
        raise RunTerminated("SIGTERM received")

    def log_seed(self, seed: int) -> None:
        self.logger.event(constants.SEED, seed, depth=1)

    def start_timed_region(self) -> None:
        """init_stop + run_start: everything after this counts towards the score."""
        self.logger.end(constants.INIT_STOP, depth=1)
        self.logger.start(constants.RUN_START, depth=1)
        self.run_started = True

    def before_run_stop(self, log: Callable[[], None]) -> None:
        """Log something just before `run_stop`, however the run ends (e.g. the samples actually trained)."""
        self._before_stop.append(log)

    def succeed(self) -> None:
        self.status = constants.SUCCESS

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.run_started:
                for log in self._before_stop:
                    log()
                self.logger.end(constants.RUN_STOP, metadata={constants.STATUS: self.status})
            if exc is not None:
                print(f"MLPerf run ended by {exc_type.__name__}: {exc}", flush=True)
            self.logger.flush()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        return False


def format_quality(quality: Quality) -> str:
    if isinstance(quality, Mapping):
        return ", ".join(f"{name} {value:.5f}" for name, value in quality.items())
    return f"{quality:.5f}"


def train_to_target(run: MLPerfRun, schedule: Sequence[Block], step: TrainStep, batches: Iterator,
                    evaluate: Callable[[], Quality], reached: Callable[[Quality], bool],
                    progress: Callable[[int], float] | None = None,
                    diverged: Callable[[Quality], bool] | None = None, stop_after_evals: int = 0) -> bool:
    """Train and evaluate block by block until `reached(quality)`; see the module docstring.

    `progress(samples_trained)` is the `epoch_num` an evaluation is logged at
    when a benchmark measures it (BERT: the sequences actually trained);
    otherwise the block's nominal one. `diverged(quality)` ends the run there
    (aborted), for a reference that gives up on a collapsed model (unet3d:
    Dice below 1e-6). `stop_after_evals` > 0 ends it (aborted) after that many
    evaluations short of the target: a check of the run path. Returns whether the target was reached; the run is
    marked successful only then.
    """
    log = run.logger
    evaluations = 0
    for block in schedule:
        log.start(constants.BLOCK_START, metadata={
            constants.FIRST_EPOCH_NUM: block.first_epoch_num, constants.EPOCH_COUNT: block.epoch_count})
        step.train_mode()
        start = time.perf_counter()
        while step.steps < block.until_step:
            step(batches)
        stats = step.monitor.drain()  # all ranks agree, and the host waits for the device: the time is real
        seconds = time.perf_counter() - start
        at = progress(step.monitor.samples_trained) if progress else block.epoch_num
        tracked = {"throughput": stats.samples / seconds}
        if stats.mean_loss == stats.mean_loss:  # not NaN: some rank computed a loss
            tracked["train_loss"] = stats.mean_loss
        log.event("tracked_stats", tracked, metadata={constants.EPOCH_NUM: at})
        shown = at if isinstance(at, int) else f"{at:.6g}"
        line = f"epoch {shown}: training loss {stats.mean_loss:.5f}, {stats.samples / seconds:.1f} samples/s"
        quality = None
        if block.evaluate:
            log.start(constants.EVAL_START, metadata={constants.EPOCH_NUM: at})
            step.train_mode(False)
            with torch.no_grad(), step.precision.autocast():
                quality = evaluate()
            log.end(constants.EVAL_STOP, metadata={constants.EPOCH_NUM: at})
            log.event(constants.EVAL_ACCURACY, quality, metadata={constants.EPOCH_NUM: at})
            line += f", eval accuracy {format_quality(quality)}"
            evaluations += 1
        log.end(constants.BLOCK_STOP, metadata={constants.FIRST_EPOCH_NUM: block.first_epoch_num})
        if log.enabled:
            print(line, flush=True)
        if quality is not None and reached(quality):
            run.succeed()
            return True
        if quality is not None and diverged is not None and diverged(quality):
            if log.enabled:
                print(f"the model diverged (eval accuracy {format_quality(quality)}): giving up", flush=True)
            return False
        if stop_after_evals and evaluations >= stop_after_evals:
            if log.enabled:
                print(f"stopped after {evaluations} evaluation(s) (STOP_AFTER_EVALS): a check, not a result",
                      flush=True)
            return False
    if log.enabled:
        print("out of epochs before reaching the quality target", flush=True)
    return False
