"""Convergence report: quality against epochs for every run, the RCP, and the olympic-scored time to train.

    python3 -m compliance.report LOG [LOG ...] --out DIR

Groups the logs by their `submission_benchmark` and writes, per benchmark,
`DIR/<benchmark>_convergence.png` — each run's `eval_accuracy` against its
`epoch_num` (in the RCP's unit: samples for bert, tokens for gpt3, a fraction
of the epoch for dlrm_dcnv2, epochs otherwise), one line per run labelled by
seed, the quality target, and the RCP's mean and minimum epochs to converge at
the runs' global batch size (interpolated as the RCP checker does; a batch
size no RCP covers is named in the title instead); below it, a strip of the
runs' times to train with the olympic-scored mean — then `DIR/report.md`,
which lists the runs, the score (or why there is none) and embeds the PNGs.

A run converged when its `run_stop` status is `success` (the summarizer
instead drops a log the compliance checker fails, which a run that missed the
target does); its epochs to converge are the `epoch_num` of its last
evaluation before `run_stop`, as the RCP checker reads them. The score is the
summarizer's before any RCP scaling (`scaling.json`), which report.md states.

A log that is not an MLPerf log, or has no usable `eval_accuracy`, is named
with the reason and left out (and listed in report.md); exits 2 when no log is
usable, 1 when DIR cannot be written. `write_report(logs, out)` does the same
for callers in Python and raises ReportError when no log is usable.
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from compliance.check import RULESET, USAGE, RunSummary, read_events, summarize


@dataclass(frozen=True)
class Goal:
    metric: str  # what eval_accuracy (or one of its components) measures
    target: float
    lower_is_better: bool = False

    def reached(self, value: float) -> bool:
        return value <= self.target if self.lower_is_better else value >= self.target

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.lower_is_better else '>='} {self.target:g}"


# rules: the eval_accuracy ATLEAST_ONE_CHECK of compliance_checker/training_3.0.0/closed_<benchmark>.yaml
# (the sanity bounds there, such as < 1.0 or WER > 0, are left out). "" is the value of a scalar metric.
GOALS = {
    "resnet": {"": Goal("top-1 accuracy", 0.759)},
    "bert": {"": Goal("masked-LM accuracy", 0.720)},
    "dlrm_dcnv2": {"": Goal("AUC", 0.80275)},
    "gpt3": {"": Goal("log perplexity", 2.69, lower_is_better=True)},
    "maskrcnn": {"BBOX": Goal("box mAP", 0.377), "SEGM": Goal("mask mAP", 0.339)},
    "ssd": {"": Goal("mAP", 0.340)},
    "unet3d": {"": Goal("mean Dice", 0.908)},
    "rnnt": {"": Goal("WER", 0.058, lower_is_better=True)},
}
# what epoch_num counts, per benchmark (rcp_checker reads eval_accuracy's epoch_num; the RCP files use the same unit)
UNITS = {"bert": "samples", "gpt3": "tokens", "dlrm_dcnv2": "epochs (fraction of one)"}
RCP_PASS = "pruned_rcps"  # what the package checker checks against


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class Run:
    log: Path
    summary: RunSummary
    batch_size: int | None
    evals: list[tuple[float, dict[str, float]]]  # (epoch_num, {component: value}) in log order, up to run_stop

    @property
    def converged(self) -> bool:
        return self.summary.status == "success"

    @property
    def epochs(self) -> float | None:
        """Epochs to converge as the RCP checker reads them: the last evaluation's epoch_num, of a successful run."""
        return round(self.evals[-1][0], 3) if self.converged else None

    @property
    def minutes(self) -> float | None:
        """The time to train the summarizer counts: None for a run that did not converge."""
        return self.summary.minutes if self.converged else None

    @property
    def label(self) -> str:
        name = self.log.name if self.summary.seed is None else f"seed {self.summary.seed}"
        return name + ("" if self.converged else f" ({self.summary.status or 'no run_stop'})")


def read_run(path: Path) -> Run:
    """The run a log records; ReportError saying why when the log cannot be used."""
    try:
        events = [e for e in read_events(path) if isinstance(e, dict)]
    except OSError as err:
        raise ReportError(f"{path}: cannot read it ({err.strerror or err})") from None
    if not events:
        raise ReportError(f"{path}: not an MLPerf log (no ':::MLLOG {{json}}' lines)")
    try:
        summary = summarize(path)
    except (KeyError, TypeError, AttributeError) as err:
        raise ReportError(f"{path}: malformed MLPerf log ({type(err).__name__}: {err})") from None
    if not summary.benchmark or not isinstance(summary.benchmark, str):
        raise ReportError(f"{path}: no submission_benchmark naming the benchmark")
    batch_size, evals = None, []
    for event in events:
        key, value, metadata = event.get("key"), event.get("value"), event.get("metadata") or {}
        if key == "run_stop":
            break
        if key == "global_batch_size" and batch_size is None and isinstance(value, (int, float)):
            batch_size = int(value)
        if key == "eval_accuracy" and _number(metadata.get("epoch_num")):
            quality = value if isinstance(value, dict) else {"": value}
            if quality and all(_number(v) for v in quality.values()):
                evals.append((float(metadata["epoch_num"]), {k: float(v) for k, v in quality.items()}))
    if not evals:
        raise ReportError(f"{path}: no eval_accuracy with a numeric value and an epoch_num before run_stop")
    return Run(path, summary, batch_size, evals)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_runs(logs: list[Path]) -> tuple[dict[str, list[Run]], list[str]]:
    """({benchmark: runs}, one message per unusable log)."""
    groups: dict[str, list[Run]] = {}
    problems = []
    for log in logs:
        try:
            run = read_run(Path(log))
        except ReportError as err:
            problems.append(str(err))
            continue
        groups.setdefault(run.summary.benchmark, []).append(run)
    return groups, problems


def max_dropped(benchmark: str) -> int:
    # result_summarizer._compute_strong_score_standalone: `max_dropped_scores = 4 if benchmark == "unet3d" else 1`
    return 4 if benchmark == "unet3d" else 1


def olympic_score(minutes: list[float | None], benchmark: str) -> float | None:
    """The result summarizer's score: the mean of the runs' times without the fastest and the slowest.

    None marks a run that did not converge: it counts as one of the slowest,
    dropped (4 each way for unet3d, 1 otherwise); more failures than that, or
    no time left to average, give no score (None).
    """
    failed = sum(m is None for m in minutes)
    drop = max_dropped(benchmark)
    if failed > drop:
        return None
    times = sorted(m for m in minutes if m is not None)
    kept = times[drop:len(times) - (drop - failed)]
    return statistics.fmean(kept) if kept else None


def why_no_score(minutes: list[float | None], benchmark: str) -> str:
    failed, drop = sum(m is None for m in minutes), max_dropped(benchmark)
    if failed > drop:
        return f"{failed} of {len(minutes)} runs did not converge; the summarizer allows at most {drop}"
    return f"{len(minutes)} runs leave none to average once the {drop} fastest and {drop} slowest are dropped"


@dataclass(frozen=True)
class Rcp:
    mean: float | None  # epochs to converge (olympic mean of the reference runs), or None when not drawn
    minimum: float | None  # the smallest mean the RCP checker accepts
    note: str  # which RCP, or why none is drawn (the plot's title)
    detail: str = ""  # what the RCP checker does instead (report.md)


@functools.lru_cache(maxsize=None)
def _rcp_checker(benchmark: str):
    from mlperf_logging.rcp_checker.rcp_checker import RCP_Checker

    return RCP_Checker(USAGE, RULESET, benchmark, verbose=False)


def rcp_at(benchmark: str, batch_size: int | None) -> Rcp:
    """The RCP the checker compares runs of this batch size with: an entry, or one interpolated between two."""
    if batch_size is None:
        return Rcp(None, None, "no global_batch_size logged: RCP not looked up")
    try:
        checker = _rcp_checker(benchmark)
    except (OSError, KeyError) as err:
        return Rcp(None, None, f"no {RULESET} RCPs for {benchmark} ({type(err).__name__}: {err})")
    # the checker's own lookup and interpolation (check_directory), so the numbers are the ones it uses
    record, note = checker._find_rcp(batch_size, RCP_PASS), f"RCP at BS {batch_size}"
    if record is None:
        low, high = checker._find_top_min_rcp(batch_size, RCP_PASS), checker._find_bottom_max_rcp(batch_size, RCP_PASS)
        sizes = sorted(r["BS"] for r in checker._get_rcp_data(RCP_PASS).values())
        if low is None or high is None:
            note = f"no RCP covers BS {batch_size} (RCPs: BS {sizes[0]}-{sizes[-1]}), none drawn"
            return Rcp(None, None, note, _uncovered(checker, high is not None))
        _, record = checker._create_interp_rcp(batch_size, low, high)
        note = f"RCP interpolated between BS {low['BS']} and {high['BS']}"
    return Rcp(float(record["RCP Mean"]), float(record["Min Epochs"]), note)


def _uncovered(checker, below: bool) -> str:
    if not below:
        return "the RCP checker asks for an RCP at this batch size"
    smallest = checker._find_min_rcp(RCP_PASS)  # check_directory: a smaller batch size must converge no faster
    return (f"the RCP checker requires convergence no faster than BS {smallest['BS']}'s minimum, "
            f"{_fmt(smallest['Min Epochs'])}")


def components(runs: list[Run]) -> list[str]:
    """The metric's components, in the order logged ("" alone for a scalar metric)."""
    return list(dict.fromkeys(k for run in runs for _, quality in run.evals for k in quality))


def first_reached(run: Run, goals: dict[str, Goal]) -> float | None:
    """epoch_num of the first evaluation meeting every component's target (None if none, or no target known)."""
    for epoch, quality in run.evals:
        if goals and all(k in quality and goal.reached(quality[k]) for k, goal in goals.items()):
            return epoch
    return None


def draw_benchmark(benchmark: str, runs: list[Run], path: Path) -> Path:
    """One PNG: a quality panel per metric component above a strip of times to train."""
    names = components(runs)
    goals = GOALS.get(benchmark, {})
    unit = UNITS.get(benchmark, "epochs")
    sizes = sorted({run.batch_size for run in runs}, key=lambda bs: (bs is None, bs))
    rcps = {bs: rcp_at(benchmark, bs) for bs in sizes}
    palette = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    colors = [palette(i % palette.N) for i in range(len(runs))]

    legend_columns = 1 + len(runs) // 20
    fig = Figure(figsize=(max(7.0, 5.5 * len(names)) + 2.2 * legend_columns, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, len(names), height_ratios=[4, 1])
    for column, name in enumerate(names):
        ax = fig.add_subplot(grid[0, column])
        goal = goals.get(name)
        _draw_quality(ax, runs, name, goal, colors)
        for bs, rcp in rcps.items():
            if rcp.mean is not None:
                suffix = f" (BS {bs})" if len(rcps) > 1 else ""
                ax.axvline(rcp.mean, color="black", linestyle=":", label=f"RCP mean {_fmt(rcp.mean)}{suffix}")
                ax.axvline(rcp.minimum, color="gray", linestyle="-.", label=f"RCP minimum {_fmt(rcp.minimum)}{suffix}")
        ax.set_xlabel(f"epoch_num ({unit})")
        ax.set_ylabel(goal.metric if goal else (name or "eval_accuracy"))
        ax.set_title(goal.describe() if goal else f"{name or 'eval_accuracy'} (no target known)", fontsize="medium")
        ax.grid(alpha=0.3)
        if column == len(names) - 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="x-small", ncol=legend_columns)
    _draw_times(fig.add_subplot(grid[1, :]), benchmark, runs, colors)
    synthetic = " on synthetic data" if any(run.summary.synthetic for run in runs) else ""
    batch = ", ".join("?" if bs is None else str(bs) for bs in sizes)
    fig.suptitle(f"{benchmark}: {len(runs)} run(s){synthetic}, global batch size {batch}\n"
                 + "; ".join(rcp.note for rcp in rcps.values()), fontsize="medium")
    fig.savefig(path, dpi=100)
    return path


def _draw_quality(ax, runs: list[Run], name: str, goal: Goal | None, colors: list) -> None:
    values = []
    for run, color in zip(runs, colors):
        points = [(epoch, quality[name]) for epoch, quality in run.evals if name in quality]
        if not points:
            continue
        values += [v for _, v in points]
        ax.plot(*zip(*points), color=color, marker="o", markersize=3, label=run.label,
                linestyle="-" if run.converged else "--", alpha=1.0 if run.converged else 0.6)
        if run.converged:
            ax.plot(*points[-1], color=color, marker="*", markersize=11, linestyle="none")
    if goal is not None:
        ax.axhline(goal.target, color="red", linewidth=1, label=f"target {goal.describe()}")
        # WER starts far above its target (NVIDIA's rnnt logs begin near 12): a log scale keeps the target readable
        if goal.lower_is_better and values and min(values) > 0 and max(values) / goal.target > 20:
            ax.set_yscale("log")


def _draw_times(ax, benchmark: str, runs: list[Run], colors: list) -> None:
    for index, (run, color) in enumerate(zip(runs, colors)):
        if run.summary.minutes is None:
            continue
        jitter = ((index % 5) - 2) * 0.15  # keeps equal times apart
        if run.converged:
            ax.plot(run.summary.minutes, jitter, marker="o", color=color, linestyle="none")
        else:
            ax.plot(run.summary.minutes, jitter, marker="x", color="red", markersize=9, linestyle="none",
                    label="not converged (counts as the slowest)")
    score = olympic_score([run.minutes for run in runs], benchmark)
    if score is not None:
        ax.axvline(score, color="black", label=f"olympic mean {score:.3f} min")
    else:
        ax.text(0.5, 0.95, "no olympic score: " + why_no_score([run.minutes for run in runs], benchmark),
                transform=ax.transAxes, ha="center", va="top", fontsize="small",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="x-small")
    ax.set_ylim(-0.6, 0.6)
    ax.set_yticks([])
    ax.set_xlabel("time to train (minutes, run_start to run_stop)")


def _fmt(value: float | None, spec: str | None = None) -> str:
    """'-' for None; an amount (samples, tokens, epochs) whole above 1000, else 4 significant digits."""
    if value is None:
        return "-"
    if spec is None:
        spec = ",.0f" if abs(value) >= 1000 else ".4g"
    return format(value, spec)


def benchmark_section(benchmark: str, runs: list[Run], png: str) -> list[str]:
    goals = GOALS.get(benchmark, {})
    names = components(runs)
    minutes = [run.minutes for run in runs]
    score = olympic_score(minutes, benchmark)
    drop = max_dropped(benchmark)
    failed = sum(m is None for m in minutes)
    unit = UNITS.get(benchmark, "epochs")
    lines = [f"## {benchmark}", "", f"![{benchmark} convergence]({png})", "",
             "Target: " + (", ".join(goal.describe() for goal in goals.values()) or "none known")
             + f"; epoch_num counts {unit}.", ""]
    for bs in sorted({run.batch_size for run in runs}, key=lambda b: (b is None, b)):
        lines += _rcp_lines(benchmark, [run for run in runs if run.batch_size == bs], bs, unit)
    heads = ["seed", "status", "minutes", "epoch_num at convergence", "first eval at target"]
    heads += [f"last {name or 'quality'}" for name in names] + ["log"]
    lines += ["", "| " + " | ".join(heads) + " |", "|---:|---|" + "---:|" * (len(heads) - 3) + "---|"]
    lines += ["| " + " | ".join(_row(run, goals, names)) + " |" for run in runs]
    needed = _result_count(benchmark)
    lines.append("")
    if score is not None:
        dropped = f"{failed} not converged, counted as the slowest" if failed else "all converged"
        lines.append(f"Olympic score: **{score:.3f} min** ({len(runs)} runs, {dropped}; the {drop} fastest and "
                     f"{drop} slowest dropped).")
    else:
        lines.append(f"No olympic score: {why_no_score(minutes, benchmark)}.")
    if needed is not None and needed != len(runs):
        lines.append(f"A result needs exactly {needed} runs; these are {len(runs)}.")
    return lines + [""]


def _rcp_lines(benchmark: str, runs: list[Run], batch_size: int | None, unit: str) -> list[str]:
    """The RCP at this batch size, and the runs' epochs to converge measured as the RCP checker measures them."""
    rcp = rcp_at(benchmark, batch_size)
    if rcp.mean is not None:
        found = f"{rcp.note}: mean {_fmt(rcp.mean)}, minimum {_fmt(rcp.minimum)} {unit} to converge"
    else:
        found = rcp.note + (f"; {rcp.detail}" if rcp.detail else "")
    lines = [f"- global batch size {batch_size}: {found}"]
    epochs = olympic_score([run.epochs for run in runs], benchmark)
    if epochs is not None:
        lines.append(f"  - the runs' olympic mean {unit} to converge: {_fmt(epochs)}"
                     + ("" if rcp.minimum is None else f" (the RCP checker needs >= {_fmt(rcp.minimum)})"))
    if epochs is not None and rcp.minimum is not None and rcp.minimum <= epochs < rcp.mean:
        # rcp_checker._eval_submission_record: a mean faster than the RCP's scales the score (scaling.json)
        lines.append(f"  - faster than the RCP mean: the package checker scales the score by "
                     f"{rcp.mean / epochs:.4f}, which the score below does not include")
    return lines


def _row(run: Run, goals: dict[str, Goal], names: list[str]) -> list[str]:
    status = run.summary.status or "no run_stop"
    last = run.evals[-1][1]
    return ["-" if run.summary.seed is None else str(run.summary.seed),
            status if run.converged else f"**{status} (not converged)**",
            _fmt(run.summary.minutes, ".3f"), _fmt(run.epochs), _fmt(first_reached(run, goals)),
            *(_fmt(last.get(name), ".5f") for name in names), f"`{run.log}`"]


def _result_count(benchmark: str) -> int | None:
    from mlperf_logging.benchmark_meta import get_result_file_counts

    return get_result_file_counts(USAGE).get(benchmark)


def safe_name(benchmark: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", benchmark).lstrip(".") or "unnamed"


def write_runs(groups: dict[str, list[Run]], problems: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = ["# Convergence report", "",
             f"{sum(map(len, groups.values()))} run(s) of {len(groups)} benchmark(s); ruleset {RULESET}, "
             f"RCPs as the package checker uses them ({RCP_PASS}). A star marks each converged run's last "
             "evaluation; dashed lines are runs that did not converge.", ""]
    for benchmark in sorted(groups):
        png = out / f"{safe_name(benchmark)}_convergence.png"
        written.append(draw_benchmark(benchmark, groups[benchmark], png))
        lines += benchmark_section(benchmark, groups[benchmark], png.name)
    if problems:
        lines += ["## Logs left out", ""] + [f"- {problem}" for problem in problems] + [""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return written + [report]


def write_report(logs: list[Path], out: Path) -> list[Path]:
    """Write the PNGs and report.md for `logs` under `out`; the files written. ReportError if no log is usable."""
    groups, problems = read_runs(logs)
    if not groups:
        raise ReportError("no usable log:\n" + "\n".join(problems))
    return write_runs(groups, problems, Path(out))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="MLPerf result logs, any benchmarks")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs and report.md")
    args = parser.parse_args(argv)
    groups, problems = read_runs(args.logs)
    for problem in problems:
        print(f"compliance.report: skipped {problem}", file=sys.stderr)
    if not groups:
        print("compliance.report: no usable log, nothing written", file=sys.stderr)
        return 2
    try:
        written = write_runs(groups, problems, args.out)
    except OSError as err:
        print(f"compliance.report: cannot write under {args.out}: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
