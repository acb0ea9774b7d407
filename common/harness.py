"""The MLPerf run lifecycle and a small train-until-target loop.

`MLPerfRun` owns the lifecycle events: `init_start` when entered, the
submission block, `init_stop`/`run_start` when the timed region begins, and
`run_stop` when it is left. Once `run_start` is logged, leaving the block any
way but through `succeed()` — an exception, a non-finite loss, SIGTERM (what
SLURM sends at the time limit) or running out of epochs — logs `run_stop`
with status `aborted`, and the log is flushed before the exception goes on.
That holds for the logging process (rank 0); when another rank dies, its
launcher ends the others (torchrun does; run.sub uses srun --kill-on-bad-exit),
which reach rank 0 as SIGTERM.

`train_to_target` runs blocks of training, each followed by one evaluation
(the rules' cadence is the benchmark's choice of blocks), and stops at the
quality target.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from common.config import SystemConfig
from common.mlperf_log import MLPerfLogger, constants


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


class RunTerminated(BaseException):
    """SIGTERM arrived (SLURM time limit, scancel, torchrun shutting down).

    A BaseException so that no `except Exception` on the way can swallow it.
    """


@dataclass(frozen=True)
class Block:
    """Epochs trained between two evaluations (MLPerf `block_start`/`block_stop`)."""

    first_epoch: int  # 1-based, as logged
    epoch_count: int

    @property
    def last_epoch(self) -> int:
        return self.first_epoch + self.epoch_count - 1


def epoch_blocks(num_epochs: int, period: int, offset: int) -> list[Block]:
    """Blocks ending at the evaluation epochs offset+1, offset+1+period, ... <= num_epochs.

    Epochs after the last evaluation point could never produce a result, so
    they are not trained.
    """
    if not 0 <= offset < period:
        raise ValueError(f"eval offset {offset} must be in [0, {period})")
    blocks, first, last = [], 1, offset + 1
    while last <= num_epochs:
        blocks.append(Block(first, last - first + 1))
        first, last = last + 1, last + period
    return blocks


class MLPerfRun:
    """Context manager for one MLPerf run; see the module docstring."""

    def __init__(self, logger: MLPerfLogger, benchmark: str, system: SystemConfig):
        self.logger = logger
        self.benchmark = benchmark
        self.system = system
        self.run_started = False
        self.status = constants.ABORTED
        self._previous_sigterm = None

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

    def succeed(self) -> None:
        self.status = constants.SUCCESS

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self.run_started:
                self.logger.end(constants.RUN_STOP, metadata={constants.STATUS: self.status})
            if exc is not None:
                print(f"MLPerf run ended by {exc_type.__name__}: {exc}", flush=True)
            self.logger.flush()
        finally:
            signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        return False


def train_to_target(run: MLPerfRun, blocks: Sequence[Block] | Iterable[Block],
                    train_block: Callable[[Block], int], evaluate: Callable[[Block], float],
                    reached: Callable[[float], bool],
                    progress: Callable[[Block], int] | None = None) -> bool:
    """Train block by block, evaluating after each, until `reached(accuracy)`.

    `train_block` returns the number of samples it trained on (all ranks
    together) and must end at a host-device sync point, so the measured
    throughput is real. `progress(block)` is the `epoch_num` logged with the
    evaluation (default: the block's last epoch; benchmarks whose "epochs" are
    samples, like BERT, return the samples actually trained). Returns whether
    the target was reached; the run is marked successful only then.
    """
    log = run.logger
    for block in blocks:
        log.start(constants.BLOCK_START, metadata={
            constants.FIRST_EPOCH_NUM: block.first_epoch, constants.EPOCH_COUNT: block.epoch_count})
        start = time.perf_counter()
        samples = train_block(block)
        seconds = time.perf_counter() - start
        at = progress(block) if progress else block.last_epoch
        log.event("tracked_stats", {"throughput": samples / seconds}, metadata={constants.EPOCH_NUM: at})
        log.start(constants.EVAL_START, metadata={constants.EPOCH_NUM: at})
        accuracy = evaluate(block)
        log.end(constants.EVAL_STOP, metadata={constants.EPOCH_NUM: at})
        log.event(constants.EVAL_ACCURACY, accuracy, metadata={constants.EPOCH_NUM: at})
        log.end(constants.BLOCK_STOP, metadata={constants.FIRST_EPOCH_NUM: block.first_epoch})
        if log.enabled:
            print(f"epoch {at}: eval accuracy {accuracy:.5f}, {samples / seconds:.1f} samples/s", flush=True)
        if reached(accuracy):
            run.succeed()
            return True
    if log.enabled:
        print("out of epochs before reaching the quality target", flush=True)
    return False
