"""One process's part of one MLPerf run: the skeleton every `<bench>/train.py` shares.

    def main(argv=None) -> int:
        args = parse_args(argv)
        with Session(RULES.benchmark, args, RunConfig) as s:  # config, process group, seed, lifecycle
            data = ...; model = ...; model = parallelize(...); optimizer = ...
            s.train_to_target(run_plan(s.cfg, s.runtime, s.world_size, sizes_of(data)), step, batches, evaluate)
        return s.exit_code

`Session` loads the config file (system, runtime and the benchmark's own
dataclass), joins the process group, agrees on the seed and logs the run's
lifecycle. A benchmark's `run_plan(...)` is a `RunPlan`: everything the run
will log before training and where it evaluates, computed from the config and
the dataset's sizes alone — so `compliance.preflight` renders exactly what a
run of a config will log, from the same function, without data or training.
`train_to_target` logs the hyperparameters, `data_synthetic` (from the
dataset's marker, `common.synthetic`), `train_samples` and `eval_samples` — so
that no benchmark can forget them — around the timed loop of `common.harness`
(`log_and_train`, which the preflight drives with planned steps). Leaving the
`with` block any way but by reaching the target ends the log with `run_stop`
`aborted`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from common import dist, harness
from common.config import RuntimeConfig, SystemConfig, load_configs, require
from common.mlperf_log import MLPerfLogger, constants
from common.precision import Precision
from common.schedule import Block
from common.step import TrainStep
from common.synthetic import is_synthetic


@dataclass(frozen=True)
class RunPlan:
    """What a run of one config logs before training, and its evaluation schedule."""

    hyperparameters: Mapping[str, Any]
    schedule: Sequence[Block]
    eval_samples: int
    train_samples: int | None  # None: the samples actually trained, logged just before run_stop
    samples_per_step: int  # one optimizer step's global batch, in the unit of train_samples
    reached: Callable[[Any], bool]  # the quality target
    target: Any  # a quality value that just reaches it (what the preflight's last evaluation reports)
    untrained: Any  # one that does not (its earlier evaluations)
    progress: Callable[[int], float] | None = None  # epoch_num of an evaluation from the samples trained
    diverged: Callable[[Any], bool] | None = None  # the reference gives up on the run at this quality
    # How far (relative) a run's measured epoch_num may fall from the plan's step x samples_per_step: 0 where
    # progress is counted exactly; bert's packed rows hold a varying number of sequences.
    progress_tolerance: float = 0.0

    @property
    def global_batch(self) -> int:
        return self.hyperparameters[constants.GLOBAL_BATCH_SIZE]


def log_and_train(run: harness.MLPerfRun, plan: RunPlan, step: TrainStep, batches: Iterator,
                  evaluate: Callable[[], Any], data_synthetic: bool, stop_after_evals: int = 0) -> bool:
    """The plan's settings, then the timed region: what every run logs, in this order (see the module docstring).
    `stop_after_evals` > 0 (STOP_AFTER_EVALS) ends the run after that many evaluations and marks the log so."""
    logger = run.logger
    logger.events(plan.hyperparameters)
    logger.event("data_synthetic", data_synthetic)
    if stop_after_evals:
        logger.event("stop_after_evals", stop_after_evals)
    run.start_timed_region()
    logger.event(constants.EVAL_SAMPLES, plan.eval_samples)
    if plan.train_samples is None:
        run.before_run_stop(lambda: logger.event(constants.TRAIN_SAMPLES, step.monitor.samples_trained))
    else:
        logger.event(constants.TRAIN_SAMPLES, plan.train_samples)
    return harness.train_to_target(run, plan.schedule, step, batches, evaluate, plan.reached, plan.progress,
                                   plan.diverged, stop_after_evals)


class Session:
    def __init__(self, benchmark: str, args: argparse.Namespace, run_config: type, *, fp8_amax_history: int = 16):
        self.args, self.config_file = args, args.config
        self.system, self.runtime, self.cfg = load_configs(args.config, SystemConfig, RuntimeConfig, run_config)
        self.denv = dist.read_dist_env()
        self.logger = MLPerfLogger(rank=self.denv.rank, filename=args.log_file)
        self.run = harness.MLPerfRun(self.logger, benchmark, self.system)
        self._fp8_amax_history = fp8_amax_history
        self.reached = False

    @property
    def rank(self) -> int:
        return self.denv.rank

    @property
    def world_size(self) -> int:
        return self.denv.world_size

    def __enter__(self) -> "Session":
        self.run.__enter__()
        try:
            self.device, self.seed = dist.start(self.denv, self.runtime.device, self.args.seed,
                                                self.runtime.dist_timeout_s, self.runtime.process_group == "always")
        except BaseException as e:
            self.run.__exit__(type(e), e, e.__traceback__)
            raise
        self.run.log_seed(self.seed)
        self.precision = Precision(self.runtime.precision, self.device.type, self._fp8_amax_history)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return self.run.__exit__(exc_type, exc, tb)
        finally:
            dist.shutdown()

    @property
    def exit_code(self) -> int:
        return 0 if self.reached else 1

    def require(self, ok: bool, variable: str, message: str) -> None:
        """The benchmark's own limit on a config variable, reported with the variable and the config file."""
        require(ok, self.config_file, variable, message)

    def train_to_target(self, plan: RunPlan, step: TrainStep, batches: Iterator,
                        evaluate: Callable[[], Any]) -> bool:
        """Log the plan, start the timed region and train to the target (`log_and_train`)."""
        self.reached = log_and_train(self.run, plan, step, batches, evaluate, is_synthetic(self.args.data_dir),
                                     self.runtime.stop_after_evals)
        return self.reached
