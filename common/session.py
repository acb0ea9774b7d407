"""One process's part of one MLPerf run: the skeleton every `<bench>/train.py` shares.

    def main(argv=None) -> int:
        args = parse_args(argv)
        with Session(RULES.benchmark, args, RunConfig) as s:  # config, process group, seed, lifecycle
            data = ...; model = ...; model = parallelize(...); optimizer = ...
            s.train_to_target(schedule, step, batches, evaluate, reached=..., hyperparameters=...,
                              eval_samples=...)
        return s.exit_code

`Session` loads the config file (system, runtime and the benchmark's own
dataclass), joins the process group, agrees on the seed and logs the run's
lifecycle; `train_to_target` logs the hyperparameters, `data_synthetic` (from
the dataset's marker, `common.synthetic`), `train_samples` and `eval_samples`
— so that no benchmark can forget them — around the timed loop of
`common.harness`. Leaving the `with` block any way but by reaching the target
ends the log with `run_stop` `aborted`.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable, Iterator, Mapping, Sequence

from common import dist, harness
from common.config import RuntimeConfig, SystemConfig, load_configs, require
from common.mlperf_log import MLPerfLogger, constants
from common.precision import Precision
from common.schedule import Block
from common.step import TrainStep
from common.synthetic import is_synthetic


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
            self.device, self.seed = dist.start(self.denv, self.runtime.device, self.args.seed)
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

    def train_to_target(self, schedule: Sequence[Block], step: TrainStep, batches: Iterator,
                        evaluate: Callable[[], Any], *, reached: Callable[[Any], bool],
                        hyperparameters: Mapping[str, Any], eval_samples: int, train_samples: int | None = None,
                        progress: Callable[[int], float] | None = None,
                        diverged: Callable[[Any], bool] | None = None) -> bool:
        """Log the run's settings, start the timed region and train to the target (`common.harness`).

        `train_samples` None logs the samples actually trained, at the end.
        """
        self.logger.events(hyperparameters)
        self.logger.event("data_synthetic", is_synthetic(self.args.data_dir))
        self.run.start_timed_region()
        self.logger.event(constants.EVAL_SAMPLES, eval_samples)
        if train_samples is None:
            self.run.before_run_stop(lambda: self.logger.event(constants.TRAIN_SAMPLES,
                                                               step.monitor.samples_trained))
        else:
            self.logger.event(constants.TRAIN_SAMPLES, train_samples)
        self.reached = harness.train_to_target(self.run, schedule, step, batches, evaluate, reached, progress,
                                               diverged)
        return self.reached
