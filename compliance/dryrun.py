"""The whole submission as a dry run: every benchmark's CPU config x its required run count, packaged and scored.

    make dryrun                                  # python3 -m compliance.dryrun
    python3 -m compliance.dryrun [--bench resnet50 gpt3 ...] [--jobs N] [--seed-base 1]
                                 [--data-dir BENCH=PATH ...] [--store results/dryrun]

For each benchmark (compliance.package.BENCHMARKS: 5/10/10/3/5/5/40/10 runs),
run i of N is `common/smoke.sh BENCH` (what `make smoke BENCH=...` runs: the
CPU config on the synthetic dataset through run_local.sh) with SEED
seed-base + i - 1, so the seeds are distinct and a dry run is reproducible;
the benchmark's synthetic dataset is written or checked once before its runs
(`python3 -m <bench>.synthetic DIR`), and the runs skip smoke.sh's own check.
The runs do not drop the page cache (CLEAR_CACHES=0: their logs say
cache_clear false): on a 2-core machine the drop cost a unet3d run 2-2.6 s
of its 11-12, torch and the data read from disk again every run.
Each run's log, output and verdict are kept in <store>/<bench>/run_<i>/; a
run whose result.json is there and whose log still passes the official
compliance checker (compliance.check: the log's sha256 is recorded, so an edited
log is checked again) is reused, so an interrupted dry run resumes where it stopped. A run
is recorded only once its process ended by itself: one cut short by Ctrl-C
logs `run_stop` aborted but is run again next time. A run that ended by
itself short of its target (`run_stop` aborted) fails the checker on the
target but is kept and packaged: the package checker accepts one such run per
benchmark (four for unet3d), and the summarizer's olympic score drops it; a
diverged loss (NonFiniteLoss) counts as such a run. A run that fails the
checker otherwise (another exception, a log cut short) is run again.

Then one submission tree of all the benchmarks under one host description
marked as a dry run (compliance.package --all --dry-run: package checker with
RCP bypassed, RCP checker, result summarizer) in <store>/package/ — rebuilt
from the stored logs on every call — and the convergence report
(compliance.report) in <store>/report/. It prints a line per finished run
(benchmark, run i of N, minutes to target, verdict, estimated time left), the
summarizer's score table, a summary per benchmark and a verdict line, and
exits 1 on any failure (a run that crashed, the package checker, a benchmark
without a score).

--jobs N runs up to N runs of one benchmark at once, each with cores / N
threads. The default is 1: on 2 cores two single-thread gpt3 smoke runs side
by side took 37 s each against 17-19 s each one after the other with both
threads, so concurrency pays only where cores outnumber what one run uses.
The time left is estimated from this dry run's finished runs of the same
benchmark, else from the median of the benchmark's seed sweep
(docs/sweeps/<bench>.md) plus a start-up allowance.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from compliance.check import check_log, summarize
from compliance.describe_host import host_line
from compliance.package import BENCHMARKS, Packaged, PackageError, package
from compliance.report import ReportError, max_dropped, write_report

REPO_ROOT = Path(__file__).resolve().parents[1]
DATESTAMP = "dryrun"
ORG = "mlperf-h100"
STARTUP_S = 10  # interpreter, torchrun and checker around a smoke run's time to target (measured: gpt3 17-19 s
# wall for 0.15-0.18 min to target)


RUNNING: set[subprocess.Popen] = set()  # the smoke runs under way
STOPPING = threading.Event()  # set on SIGINT/SIGTERM: a run ending now is not recorded


def interrupted(signum, frame):
    STOPPING.set()
    raise KeyboardInterrupt


def stop_running() -> None:
    """SIGTERM to every run under way (its whole process group: the harness ends its log aborted), then wait."""
    for proc in list(RUNNING):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in list(RUNNING):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Run:
    bench: str
    index: int  # 1-based
    seed: int
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder / f"{DATESTAMP}_1.log"

    @property
    def record(self) -> Path:
        return self.folder / "result.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept(run: Run) -> dict | None:
    """The stored result of `run` when it can be reused: recorded, same seed, log unchanged or checked again."""
    if not (run.record.is_file() and run.log.is_file()):
        return None
    try:
        result = json.loads(run.record.read_text())
    except json.JSONDecodeError:
        return None
    if result.get("seed") != run.seed or not finished(result):
        return None
    if result.get("sha256") != sha256(run.log):
        passed, _, _, summary = check_log(run.log)
        result.update(checker_passed=passed, status=summary.status, minutes=summary.minutes, sha256=sha256(run.log))
        if summary.seed != run.seed or not finished(result):
            return None
        run.record.write_text(json.dumps(result, indent=1) + "\n")
    return result


def finished(result: dict) -> bool:
    """A run to keep: it passed the checker, or it ended by itself short of the target — out of epochs, or
    diverged (NonFiniteLoss) — with run_stop aborted: the checker fails it on the target, and the package checker
    accepts it as the olympic rule's dropped run. A run ended by any other exception is not kept."""
    return bool(result.get("checker_passed")) or (result.get("status") == "aborted" and not result.get("crashed"))


CRASH = re.compile(r"^MLPerf run ended by (\w+)", re.MULTILINE)  # common/harness.py, on an exception


def crashed(output: str) -> bool:
    """Whether the harness says an exception other than a diverged loss ended the run."""
    return any(name != "NonFiniteLoss" for name in CRASH.findall(output))


def checked_in_output(run: Run) -> bool:
    """Whether the experiment loop's own `compliance.check` of the log (common/experiments.sh runs it after every
    experiment) passed: its verdict line in the run's output, so the checker does not run twice."""
    verdict = re.compile(rf"^{re.escape(run.log.name)}: (SUCCESS[^;]*|FAILED);", re.MULTILINE)
    found = verdict.findall((run.folder / "output.txt").read_text(errors="replace"))
    return bool(found) and found[-1].startswith("SUCCESS")


def data_dir_of(bench: str, data_dirs: dict[str, Path]) -> Path:
    """The benchmark's synthetic dataset: --data-dir's, else smoke.sh's default."""
    return data_dirs.get(bench, REPO_ROOT / "data" / f"{bench}-synthetic")


class SmokeDataError(RuntimeError):
    """A benchmark's synthetic dataset could not be written or checked."""


def prepare_data(bench: str, data_dir: Path) -> None:
    """`python3 -m <bench>.synthetic DIR` once, before the benchmark's runs (it writes the set on first use, else
    checks it is the one the code writes); the runs then skip smoke.sh's own check (DATA_CHECKED=1), which for most
    benchmarks costs an import of torch per run. A check that fails is a SmokeDataError naming the command."""
    command = [sys.executable, "-m", f"{bench}.synthetic", str(data_dir)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    RUNNING.add(proc)
    try:
        output, _ = proc.communicate()
    except BaseException:  # interrupted while writing: the writer is stopped too
        STOPPING.set()
        stop_running()
        raise
    finally:
        RUNNING.discard(proc)
    if STOPPING.is_set() or proc.returncode < 0:
        raise KeyboardInterrupt
    if proc.returncode != 0:
        raise SmokeDataError(f"{' '.join(command[1:])}: exit status {proc.returncode}\n{output.strip()}")
    print(f"{output.strip()} ({time.perf_counter() - start:.1f} s)", flush=True)


def execute(run: Run, data_dir: Path, threads: int | None) -> dict:
    """One smoke run on the checked dataset `data_dir`; its verdict recorded in run.record."""
    if run.folder.exists():
        shutil.rmtree(run.folder)
    run.folder.mkdir(parents=True)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "SEED": str(run.seed), "LOGDIR": str(run.folder), "DATESTAMP": DATESTAMP,
           "MLPERF_SUBMISSION_ORG": ORG,  # the org the package is built for
           "DATADIR": str(data_dir), "DATA_CHECKED": "1",  # prepare_data checked it
           "CLEAR_CACHES": "0"}  # synthetic runs: the page-cache drop only made every run import torch cold
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    with open(run.folder / "output.txt", "w") as output:
        # its own process group, so that stopping it reaches torchrun, the ranks and tee (stop_running)
        proc = subprocess.Popen(["bash", str(REPO_ROOT / "common" / "smoke.sh"), run.bench], cwd=REPO_ROOT, env=env,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        RUNNING.add(proc)
        try:
            proc.wait()
        finally:
            RUNNING.discard(proc)
    wall = time.perf_counter() - start
    if STOPPING.is_set() or proc.returncode < 0 or proc.returncode in (130, 143):
        raise KeyboardInterrupt  # interrupted: not a finished run, and no record
    result = {"seed": run.seed, "returncode": proc.returncode, "wall_s": round(wall, 1), "checker_passed": False}
    if run.log.is_file():
        summary = summarize(run.log)
        result.update(checker_passed=checked_in_output(run), status=summary.status, minutes=summary.minutes,
                      sha256=sha256(run.log), crashed=crashed((run.folder / "output.txt").read_text(errors="replace")))
    run.record.write_text(json.dumps(result, indent=1) + "\n")
    return result


def describe(run: Run, result: dict, runs_of_bench: int) -> str:
    minutes = f"{result['minutes']:.2f} min to target" if result.get("minutes") is not None else "no time to target"
    verdict = "checker SUCCESS" if result.get("checker_passed") else \
        f"checker FAILED{' (target not reached)' if result.get('status') == 'aborted' else ''}, see " \
        f"{run.folder / 'output.txt'}"
    return (f"{run.bench} run {run.index} of {runs_of_bench} (seed {run.seed}): run_stop "
            f"{result.get('status') or 'missing'}, {minutes}, {result.get('wall_s', 0) / 60:.2f} min wall, {verdict}")


def sweep_prior_s(bench: str) -> float:
    """Expected wall seconds of one run before any has finished: the sweep's median time to target + start-up."""
    table = REPO_ROOT / "docs" / "sweeps" / f"{bench}.md"
    match = re.search(r"median ([\d.]+) min", table.read_text()) if table.is_file() else None
    return (float(match.group(1)) * 60 if match else 120.0) + STARTUP_S


class Progress:
    """Runs left and the time they are expected to take."""

    def __init__(self, runs: list[Run]):
        self.left = {run.bench: 0 for run in runs}
        for run in runs:
            self.left[run.bench] += 1
        self.walls: dict[str, list[float]] = {}
        self.total, self.done = len(runs), 0

    def finished(self, run: Run, wall_s: float | None) -> str:
        self.left[run.bench] -= 1
        self.done += 1
        if wall_s is not None:
            self.walls.setdefault(run.bench, []).append(wall_s)
        seconds = sum(n * self.expected_s(bench) for bench, n in self.left.items())
        return f"[{self.done}/{self.total} runs, ~{seconds / 60:.0f} min left]"

    def expected_s(self, bench: str) -> float:
        walls = self.walls.get(bench)
        return sum(walls) / len(walls) if walls else sweep_prior_s(bench)


def run_all(runs: list[Run], jobs: int, data_dirs: dict[str, Path]) -> dict[Run, dict]:
    progress = Progress(runs)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    results: dict[Run, dict] = {}
    for bench in dict.fromkeys(run.bench for run in runs):
        todo = []
        for run in (r for r in runs if r.bench == bench):
            result = kept(run)
            if result is None:
                todo.append(run)
                continue
            results[run] = result
            print(f"{progress.finished(run, result.get('wall_s'))} "
                  f"{describe(run, result, BENCHMARKS[bench].result_count)} (kept from an earlier dry run)", flush=True)
        if not todo:
            continue
        data_dir = data_dir_of(bench, data_dirs)
        prepare_data(bench, data_dir)
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(execute, run, data_dir, threads): run for run in todo}
            try:
                for future in concurrent.futures.as_completed(futures):
                    run = futures[future]
                    results[run] = future.result()
                    print(f"{progress.finished(run, results[run]['wall_s'])} "
                          f"{describe(run, results[run], BENCHMARKS[bench].result_count)}", flush=True)
            except BaseException:  # Ctrl-C, SIGTERM, or an error of this driver: no run is left behind
                STOPPING.set()
                for future in futures:
                    future.cancel()
                stop_running()
                raise
    return results


def timing_table(runs: list[Run], results: dict[Run, dict]) -> str:
    """Per benchmark: runs finished of those required, passing the checker, converged, their wall minutes, and
    the wall of all the required runs (measured when all finished, else the finished runs' mean x the count)."""
    lines = ["| benchmark | runs finished | pass the checker | converged | wall of the finished runs (min) "
             "| wall per run (min) | median time to target (min) | wall of all required runs (min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    total, estimated = 0.0, False
    for bench in dict.fromkeys(run.bench for run in runs):
        required = [run for run in runs if run.bench == bench]
        done = [results[run] for run in required if run in results]
        wall = sum(r.get("wall_s", 0) for r in done) / 60
        targets = sorted(r["minutes"] for r in done if r.get("status") == "success" and r.get("minutes"))
        median = f"{statistics.median(targets):.2f}" if targets else "-"
        per_run = wall / len(done) if done else None
        if len(done) == len(required):
            all_runs = f"{wall:.1f}"
            total += wall
        elif per_run is not None:
            all_runs, estimated = f"~{per_run * len(required):.1f} (estimated)", True
            total += per_run * len(required)
        else:
            all_runs, estimated = "- (none run yet)", True
        lines.append(f"| {bench} | {len(done)} of {len(required)} | {sum(bool(r.get('checker_passed')) for r in done)} "
                     f"| {sum(r.get('status') == 'success' for r in done)} | {wall:.1f} "
                     f"| {'-' if per_run is None else f'{per_run:.2f}'} | {median} | {all_runs} |")
    note = " (estimated; benchmarks with no run yet left out)" if estimated else ""
    lines.append(f"| all | {sum(run in results for run in runs)} of {len(runs)} | | | | | | "
                 f"{'~' if estimated else ''}{total:.1f}{note} |")
    return "\n".join(lines) + "\n"


def plan_runs(benches: list[str], store: Path, seed_base: int) -> list[Run]:
    return [Run(bench, i, seed_base + i - 1, store / bench / f"run_{i}")
            for bench in benches for i in range(1, BENCHMARKS[bench].result_count + 1)]


def parse_data_dirs(items: list[str]) -> dict[str, Path]:
    dirs = {}
    for item in items:
        bench, sep, path = item.partition("=")
        if not sep or bench not in BENCHMARKS:
            raise argparse.ArgumentTypeError(f"--data-dir {item!r}: expected BENCH=PATH with BENCH one of "
                                             f"{', '.join(BENCHMARKS)}")
        dirs[bench] = Path(path).resolve()
    return dirs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS),
                        help="benchmark folders (default: all eight)")
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "results" / "dryrun",
                        help="where each run's log and verdict are kept, and the package and report written")
    parser.add_argument("--jobs", type=int, default=1, help="runs of one benchmark at once (default 1)")
    parser.add_argument("--seed-base", type=int, default=1, help="seed of run 1; run i gets seed-base + i - 1")
    parser.add_argument("--status", action="store_true",
                        help="only print what the store holds: the runs finished so far and their wall time")
    parser.add_argument("--data-dir", action="append", default=[], metavar="BENCH=PATH",
                        help="a benchmark's synthetic dataset (default data/<bench>-synthetic, written on first use)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected at least 1")
    try:
        data_dirs = parse_data_dirs(args.data_dir)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    store = args.store.resolve()
    runs = plan_runs(args.bench, store, args.seed_base)
    print(f"dry run: {len(runs)} runs of {len(args.bench)} benchmark(s) "
          f"({', '.join(f'{b} x{BENCHMARKS[b].result_count}' for b in args.bench)}), logs in {store}", flush=True)
    if args.status:
        results = {run: result for run in runs if (result := kept(run)) is not None}
        print(timing_table(runs, results), end="")
        return 0
    host = host_line()
    print(host, flush=True)
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, interrupted)  # SLURM's time limit, `kill`: stop as Ctrl-C does
    signal.signal(signal.SIGINT, interrupted)
    try:
        results = run_all(runs, args.jobs, data_dirs)
    except KeyboardInterrupt:
        print("dry run interrupted; the finished runs are kept and the next call resumes", file=sys.stderr)
        return 130
    except SmokeDataError as err:
        print(f"FAILED: the synthetic dataset: {err}", file=sys.stderr)
        return 1
    failed = [run for run in runs if not finished(results[run])]
    table = timing_table(runs, results)
    (store / "timing.md").write_text(f"{host} (this call's; runs kept from an earlier call were timed then)\n\n"
                                     f"{table}")
    print(f"the runs' wall time, each measured when it ran ({store / 'timing.md'}):\n{table}")
    for run in failed:
        print(f"FAILED: {run.bench} run {run.index} (seed {run.seed}) fails the compliance checker and did not end "
              f"short of the target by itself (a crash, or a log cut short); see {run.folder / 'output.txt'}")
    for run in (r for r in runs if r not in failed and not results[r].get("checker_passed")):
        print(f"NOTE: {run.bench} run {run.index} (seed {run.seed}) did not reach the target; the package checker "
              f"accepts {max_dropped(BENCHMARKS[run.bench].mlperf_name)} such run(s) for this benchmark and the "
              "olympic score drops it")
    package_dir = store / "package"
    if package_dir.exists():  # derived from the stored logs: rebuilt every time
        shutil.rmtree(package_dir)
    packaged = None if failed else package_and_report(runs, args.bench, store)
    ok = packaged is not None and packaged.ok and not unscored(args.bench, packaged)
    minutes = (time.perf_counter() - start) / 60
    checker = "not run" if packaged is None else ("SUCCESS" if packaged.ok else "FAILED")
    print(f"DRY RUN {'PASSED' if ok else 'FAILED'}: {len(args.bench)} benchmark(s), {len(runs)} runs "
          f"({sum(bool(results[r].get('checker_passed')) for r in runs)} passing the checker), package checker "
          f"{checker}, {minutes:.1f} min; synthetic data, not a result")
    return 0 if ok else 1


def unscored(benches: list[str], packaged: Packaged) -> list[str]:
    return [b for b in benches if BENCHMARKS[b].mlperf_name not in packaged.scores]


def package_and_report(runs: list[Run], benches: list[str], store: Path) -> Packaged | None:
    """compliance.package --all --dry-run of the stored logs into <store>/package, then the convergence report;
    prints the verdicts and tables. None when packaging could not start or the report failed."""
    package_dir = store / "package"
    try:
        packaged = package(package_dir, ORG, "host", {b: [run.log for run in runs if run.bench == b] for b in benches},
                           dry_run=True)
        (package_dir / "checkers.txt").write_text(packaged.text + "\n")
    except (PackageError, OSError) as err:
        print(f"compliance.package: {err}", file=sys.stderr)
        return None
    print("\n".join(line for line in packaged.package_checker.splitlines()
                    if line.startswith("== package_checker") or "PACKAGE CHECKER" in line
                    or (not packaged.ok and "ERROR" in line)))
    print(packaged.tables)
    print(f"the checkers' whole output: {package_dir / 'checkers.txt'}")
    missing = unscored(benches, packaged)
    if missing:
        print(f"FAILED: the result summarizer gave no score for {', '.join(missing)}")
    try:
        written = write_report([run.log for run in runs], store / "report")
    except (ReportError, OSError) as err:
        print(f"compliance.report: {err}", file=sys.stderr)
        return None
    print(f"convergence report: {written[-1]}")
    return packaged


if __name__ == "__main__":
    sys.exit(main())
