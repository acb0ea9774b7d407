"""What a config will log, checked before cluster time: no data, no GPU, no training.

    python3 -m compliance.preflight resnet50/config_DGXH100_8x8x50x1.sh [--nexp 5]
    python3 -m compliance.preflight resnet50/config_DGXH100_8x8x50x1.sh --compare NVIDIA/.../result_0.txt

It loads the config as `train.py` does (`common.config.load_configs`, the file alone: the shell environment
does not override it), calls the benchmark's own `run_plan` (the function `train.py` logs and trains from)
with the real dataset's sizes and the config's DGXNNODES x DGXNGPU ranks, and prints:
- the hyperparameter block and `train_samples` / `eval_samples` the run will log;
- the evaluation schedule: each evaluation's optimizer step, samples trained and logged `epoch_num`;
- the official compliance checker's verdict (ruleset 3.0.0) on a simulated log, written by the project's
  logger through the same harness code path as a real run (`common.session.log_and_train`) with planned
  steps in place of training: its evaluations report an untrained quality, the last one just the target.
  The log says `preflight: true` (and `data_synthetic: true`); `compliance.package` refuses it always;
- the RCP the global batch size falls under in mlperf_logging's 3.0.0 table: one at that batch size, two
  around it (interpolated), or, below the smallest, the smallest (as rcp_checker does); above the largest,
  none covers it.
It exits 1 when the checker fails or no RCP covers the batch size, 2 when the config cannot be loaded.

`--compare LOG` diffs the block against a result log's (NVIDIA's v3.0 logs in mlcommons/training_results_v3.0,
`NVIDIA/results/<system>/<benchmark>/result_N.txt`), key by key, and the schedule against its `eval_accuracy`
points (the log's evaluations must be the first of the plan's: a run stops at its target; within the plan's
`progress_tolerance` where a run measures its progress, bert's packed sequences). A `train_samples` the run
measures (the plan's is None) is not compared. It exits 1 when a
value differs or a key the rules require (the checker's `closed_<benchmark>*.yaml`) or the RCPs list is
missing — except keys on the benchmark's allow-list of deliberate deviations (`DEVIATIONS` in
`<bench>/train.py`, each with its reason, shown in the output and the benchmark's README).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs, read_config_file
from common.harness import MLPerfRun
from common.mlperf_log import MLPerfLogger, constants
from common.precision import Precision
from common.schedule import Block
from common.session import RunPlan, log_and_train
from common.step import BlockStats
from compliance.check import RULESET, USAGE, check_log, read_events, rules_file

PREFLIGHT_KEY = "preflight"  # logged true by a preflight log; compliance.package refuses such a log
SEED = 0
# Keys a result log carries that describe the run, not the config: not compared.
NOT_SETTINGS = {
    constants.SEED: "each run's own",
    constants.SUBMISSION_ORG: "who submits",
    "cache_clear": "logged by the launcher (run_and_time.sh), not the training code",
    "weights_initialization": "NVIDIA's per-tensor markers",
    "init_checkpoint": "a path on the submitter's file system",
    "data_synthetic": "this project's data marker",
    PREFLIGHT_KEY: "this tool's marker",
    constants.EVAL_ACCURACY: "the schedule, compared separately",
    "tracked_stats": "measured",
    "status": "the run's outcome (NVIDIA's ssd ranks log it as a point event after run_stop)",
}
LIFECYCLE = {"init_start", "init_stop", "run_start", "run_stop", "block_start", "block_stop", "epoch_start",
             "epoch_stop", "eval_start", "eval_stop"}


class PreflightError(ValueError):
    """The config or the log to compare cannot be read."""


@dataclass(frozen=True)
class Loaded:
    bench: str
    module: Any  # <bench>.train
    system: SystemConfig
    runtime: RuntimeConfig
    cfg: Any
    plan: RunPlan

    @property
    def world_size(self) -> int:
        return self.system.nodes * self.system.gpus_per_node


def load(config_path: Path) -> Loaded:
    config_path = Path(config_path)
    if not config_path.is_file():
        raise PreflightError(f"config file {config_path} does not exist")
    bench = config_path.resolve().parent.name
    try:
        module = importlib.import_module(f"{bench}.train")
    except ModuleNotFoundError:
        raise PreflightError(f"{config_path}: {bench}/ is not a benchmark folder (no {bench}/train.py)") from None
    if not hasattr(module, "run_plan"):
        raise PreflightError(f"{bench}/train.py has no run_plan(cfg, runtime, world_size): cannot preflight it")
    try:
        system, runtime, cfg = load_configs(config_path, SystemConfig, RuntimeConfig, module.RUN_CONFIG, environ={})
    except ConfigError as err:
        raise PreflightError(str(err)) from None
    try:
        plan = module.run_plan(cfg, runtime, system.nodes * system.gpus_per_node)
    except ValueError as err:  # ConfigError too: a value the benchmark's schedule or batch split cannot take
        raise PreflightError(f"{config_path}: {err}") from None
    return Loaded(bench, module, system, runtime, cfg, plan)


class PlannedSteps:
    """Stands in for `common.step.TrainStep`: counts the plan's steps and samples, computes nothing."""

    class Monitor:
        def __init__(self):
            self.samples_trained = 0
            self.pending = 0

        def drain(self) -> BlockStats:
            samples, self.pending = self.pending, 0
            self.samples_trained += samples
            return BlockStats(samples, float("nan"))  # no loss: none was computed

    def __init__(self, samples_per_step: int):
        self.samples_per_step = samples_per_step
        self.steps = 0
        self.monitor = self.Monitor()
        self.precision = Precision("fp32", "cpu")

    def train_mode(self, training: bool = True) -> None:
        pass

    def __call__(self, batches: Iterator) -> None:
        self.steps += 1
        self.monitor.pending += self.samples_per_step


def write_log(loaded: Loaded, path: Path) -> bool:
    """The simulated log of `loaded.plan` at `path` (see the module docstring); whether it reached the target."""
    plan = loaded.plan
    evaluations = sum(block.evaluate for block in plan.schedule)
    done = []

    def evaluate():
        done.append(1)
        return plan.target if len(done) == evaluations else plan.untrained

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    logger = MLPerfLogger(rank=0, filename=path, stream=io.StringIO())
    logger.event("cache_clear", True)  # what run_and_time.sh logs before the training process starts
    with contextlib.redirect_stdout(io.StringIO()):  # the harness's progress lines
        with MLPerfRun(logger, loaded.module.RULES.benchmark, loaded.system) as run:
            run.log_seed(SEED)
            logger.event(PREFLIGHT_KEY, True)
            reached = log_and_train(run, plan, PlannedSteps(plan.samples_per_step), iter(()), evaluate,
                                    data_synthetic=True)
    logger.close()
    return reached


@dataclass(frozen=True)
class EvalPoint:
    step: int
    samples: int
    epoch_num: float


def eval_points(plan: RunPlan, log: Path) -> list[EvalPoint]:
    """Each evaluation's step and samples (from the plan) with the epoch_num the simulated log gave it."""
    logged = [e["metadata"]["epoch_num"] for e in read_events(log) if e.get("key") == constants.EVAL_ACCURACY]
    blocks = [block for block in plan.schedule if block.evaluate]
    return [EvalPoint(b.until_step, b.until_step * plan.samples_per_step, epoch)
            for b, epoch in zip(blocks, logged)]


def rcp_coverage(benchmark: str, batch: int) -> tuple[bool, str]:
    """(covered, which RCP) for a global batch size in mlperf_logging's 3.0.0 RCP table."""
    import mlperf_logging

    path = Path(mlperf_logging.__path__[0]) / "rcp_checker" / f"{USAGE}_{RULESET}" / f"rcps_{benchmark}.json"
    records = sorted(((r["BS"], name) for name, r in json.loads(path.read_text()).items()))
    exact = [name for bs, name in records if bs == batch]
    if exact:
        return True, f"{exact[0]} (batch {batch})"
    below = [(bs, name) for bs, name in records if bs < batch]
    above = [(bs, name) for bs, name in records if bs > batch]
    if below and above:
        return True, (f"interpolated between {below[-1][1]} (batch {below[-1][0]}) and {above[0][1]} "
                      f"(batch {above[0][0]})")
    if above:
        return True, (f"below every RCP: the smallest, {above[0][1]} (batch {above[0][0]}), applies, as "
                      "rcp_checker does")
    return False, (f"NONE: batch {batch} is above the largest RCP, {below[-1][1]} (batch {below[-1][0]}); "
                   "no convergence reference covers it")


def settings(events: list[dict]) -> dict[str, Any]:
    """{key: first value} of a log's settings: its point events that are neither lifecycle nor per-run."""
    found: dict[str, Any] = {}
    for event in events:
        key = event.get("key")
        if event.get("event_type") == "POINT_IN_TIME" and key not in LIFECYCLE and key not in NOT_SETTINGS:
            found.setdefault(key, event.get("value"))
    return found


def required_keys(benchmark: str, opt_name: str | None) -> set[str]:
    """Keys the 3.0.0 checker requires of a closed-division log of `benchmark`: its closed_<benchmark>.yaml and
    the optimizer's closed_<benchmark>_<opt_name>.yaml that one enqueues (resnet)."""
    keys = set()
    for path in [rules_file(f"closed_{benchmark}.yaml"), rules_file(f"closed_{benchmark}_{opt_name}.yaml")]:
        if not path.is_file():
            continue
        for rule in yaml.safe_load(path.read_text()) or []:
            key = rule.get("KEY", {})
            if key.get("REQ") in ("EXACTLY_ONE", "AT_LEAST_ONE") and key.get("NAME") not in LIFECYCLE:
                keys.add(key["NAME"])
    return keys - set(NOT_SETTINGS)


def rcp_keys(benchmark: str, logged: set[str]) -> set[str]:
    """The logged names of the hyperparameters the benchmark's RCPs list (RCP `optimizer` is `opt_name`; an RCP
    `opt_*` name is logged as is or with the optimizer's prefix, e.g. `lars_opt_*`)."""
    import mlperf_logging

    path = Path(mlperf_logging.__path__[0]) / "rcp_checker" / f"{USAGE}_{RULESET}" / f"rcps_{benchmark}.json"
    names = {name for record in json.loads(path.read_text()).values() for name in record.get("Hyperparams", {})}
    keys = set()
    for name in names:
        if name == "optimizer":
            keys.add(constants.OPT_NAME)
            continue
        candidates = [name] + [key for key in logged if key.endswith("_" + name)]
        keys.add(next((key for key in candidates if key in logged), name))
    return keys


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


@dataclass(frozen=True)
class KeyDiff:
    key: str
    ours: Any
    theirs: Any
    verdict: str  # same | differs | missing | extra
    required: bool
    allowed: str | None  # the deviation's reason

    @property
    def fails(self) -> bool:
        return self.allowed is None and (self.verdict == "differs" or (self.verdict == "missing" and self.required))


MISSING = object()


def compare_settings(ours: dict, theirs: dict, required: set[str], deviations: dict[str, str]) -> list[KeyDiff]:
    diffs = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key, MISSING), theirs.get(key, MISSING)
        verdict = ("missing" if a is MISSING else "extra" if b is MISSING else "same" if same(a, b) else "differs")
        allowed = deviations.get(key) if verdict != "same" else None
        diffs.append(KeyDiff(key, a, b, verdict, key in required, allowed))
    return diffs


def compare_schedule(ours: list[float], theirs: list[float], tolerance: float = 0.0) -> str | None:
    """None when the log's evaluations are the plan's first ones (within `tolerance`, relative), else what
    differs."""
    if len(theirs) > len(ours):
        return f"the log evaluates {len(theirs)} times, the plan only {len(ours)}"
    for i, (a, b) in enumerate(zip(ours, theirs), 1):
        if not (same(a, b) or abs(a - b) <= tolerance * abs(a)):
            return f"evaluation {i}: the plan's epoch_num {a}, the log's {b}"
    return None


def show(value: Any) -> str:
    return "-" if value is MISSING else json.dumps(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def schedule_rows(points: list[EvalPoint], full: bool) -> list[list[Any]]:
    rows = [[i, p.step, f"{p.samples:,}", f"{p.epoch_num:.6g}"] for i, p in enumerate(points, 1)]
    if full or len(rows) <= 12:
        return rows
    return rows[:6] + [["...", f"({len(rows) - 9} more)", "", ""]] + rows[-3:]


def walltime(config_path: Path, nexp: int) -> str:
    exported = read_config_file(config_path, {"NEXP": str(nexp)})
    return exported.get("WALLTIME", "not set")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--nexp", type=int, default=1, help="experiments per job, for the WALLTIME it asks for")
    parser.add_argument("--compare", type=Path, default=None, help="a result log to diff the plan against")
    parser.add_argument("--log", type=Path, default=None,
                        help="where to write the simulated log (default results/preflight/<bench>_<system>.log)")
    parser.add_argument("--all-evals", action="store_true", help="list every evaluation, not the first and last")
    args = parser.parse_args(argv)
    try:
        loaded = load(args.config)
    except PreflightError as err:
        print(f"preflight: {err}", file=sys.stderr)
        return 2
    plan, system, benchmark = loaded.plan, loaded.system, loaded.module.RULES.benchmark
    log = args.log or Path("results") / "preflight" / f"{loaded.bench}_{system.system}.log"
    write_log(loaded, log)
    passed, verdict, output, _ = check_log(log)
    covered, rcp = rcp_coverage(benchmark, plan.global_batch)
    points = eval_points(plan, log)

    print(f"== preflight {args.config}: {benchmark}, {system.nodes} x {system.gpus_per_node} ranks, "
          f"{system.submission_platform!r}, WALLTIME {walltime(args.config, args.nexp)} min for NEXP={args.nexp}")
    events = read_events(log)
    block = settings(events)
    print(table(["key", "value"], [[key, json.dumps(value)] for key, value in block.items()]))
    print(f"\nevaluation schedule: {len(points)} evaluations")
    print(table(["eval", "step", "samples trained", "epoch_num"], schedule_rows(points, args.all_evals)))
    print(f"\ncompliance checker ({USAGE} {RULESET}) on the simulated log {log}: {verdict}")
    if not passed:
        print(output)
    print(f"RCP at global batch {plan.global_batch:,}: {rcp}")
    failed = not passed or not covered

    if args.compare is not None:
        if not args.compare.is_file():
            print(f"preflight: {args.compare}: no such log", file=sys.stderr)
            return 2
        theirs_events = read_events(args.compare)
        if not theirs_events:
            print(f"preflight: {args.compare}: no :::MLLOG lines", file=sys.stderr)
            return 2
        theirs = settings(theirs_events)
        if plan.train_samples is None:  # the run logs what it trained: nothing for the plan to match
            block_compared = {k: v for k, v in block.items() if k != constants.TRAIN_SAMPLES}
            theirs.pop(constants.TRAIN_SAMPLES, None)
        else:
            block_compared = block
        required = (required_keys(benchmark, block.get(constants.OPT_NAME))
                    | rcp_keys(benchmark, set(block) | set(theirs)))
        diffs = compare_settings(block_compared, theirs, required, getattr(loaded.module, "DEVIATIONS", {}))
        print(f"\n== compared with {args.compare}")
        rows = [[d.key, show(d.ours), show(d.theirs),
                 d.verdict + (" (required)" if d.required and d.verdict == "missing" else ""),
                 ("allowed: " + d.allowed) if d.allowed else ("FAIL" if d.fails else "")]
                for d in diffs if d.verdict != "same"]
        print(table(["key", "this config", "the log", "", ""], rows) if rows else "every key and value the same")
        theirs_evals = [e["metadata"]["epoch_num"] for e in theirs_events if e.get("key") == constants.EVAL_ACCURACY]
        schedule_error = compare_schedule([p.epoch_num for p in points], theirs_evals, plan.progress_tolerance)
        if plan.train_samples is None:
            print("train_samples: measured by each run (the samples it trained), not compared")
        if plan.progress_tolerance:
            print(f"epoch_num: measured by each run, compared within {plan.progress_tolerance:.1%} of the plan's")
        counts = {v: sum(d.verdict == v for d in diffs) for v in ("same", "differs", "missing", "extra")}
        failing = [d.key for d in diffs if d.fails]
        print(f"summary: {len(diffs)} keys: {counts['same']} same, {counts['differs']} differ, "
              f"{counts['missing']} missing here, {counts['extra']} only here, "
              f"{sum(d.allowed is not None for d in diffs)} allowed deviations; "
              f"failing: {', '.join(failing) if failing else 'none'}; eval schedule: "
              + (schedule_error or f"the log's {len(theirs_evals)} evaluations are the plan's first"))
        failed |= bool(failing) or schedule_error is not None
    print(f"preflight: {'FAILED' if failed else 'OK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
