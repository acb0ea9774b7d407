"""Seed sweep of a benchmark's smoke run: does `make smoke` reach its target whatever seed it draws?

    python3 -m common.sweep BENCH --seeds 1-20[,1416050522,...]

Runs `common/smoke.sh BENCH` (what `make smoke BENCH=...` runs: the CPU
config on the synthetic dataset, through run_local.sh and the compliance
checker) once per seed, in sequence, and prints a line per seed — reached or
not, the quality and `epoch_num` at the last evaluation, time to target, the
checker's verdict — with the time left, then a summary. Each seed's result is
kept in results/sweep/<bench>/seed_<N>.json, so an interrupted sweep resumes
where it stopped (`--fresh` runs every seed again). The table is written to
docs/sweeps/<bench>.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from compliance.check import read_events, summarize
from compliance.describe_host import host_line

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_seeds(text: str) -> list[int]:
    """'1-20,1416050522' -> [1, ..., 20, 1416050522]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if last else [int(first)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected numbers and ranges like 1-20,42") from None
    return list(dict.fromkeys(seeds))


def run_seed(bench: str, seed: int, out: Path) -> dict:
    """One smoke run with SEED=seed; its verdict and what its log says."""
    logdir = out / f"seed_{seed}"
    # this interpreter's environment first on PATH, as `make smoke` puts .venv/bin first
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "SEED": str(seed), "LOGDIR": str(logdir), "DATESTAMP": "sweep"}
    start = time.perf_counter()
    proc = subprocess.run(["bash", str(REPO_ROOT / "common" / "smoke.sh"), bench], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    (logdir / "output.txt").parent.mkdir(parents=True, exist_ok=True)
    (logdir / "output.txt").write_text(proc.stdout + proc.stderr)
    log = logdir / "sweep_1.log"
    result = {"seed": seed, "passed": proc.returncode == 0, "wall_s": round(wall, 1), "log": str(log)}
    if log.is_file():
        run = summarize(log)
        evals = [e for e in read_events(log) if e["key"] == "eval_accuracy"]
        result.update(status=run.status, minutes=run.minutes, evals=len(evals),
                      quality=evals[-1]["value"] if evals else None,
                      epoch_num=evals[-1]["metadata"]["epoch_num"] if evals else None,
                      checker=next((line.split(": ", 1)[1].split(";")[0] for line in proc.stdout.splitlines()
                                    if line.startswith(log.name + ": ")), "no verdict"))
    return result


def describe(r: dict) -> str:
    if "status" not in r:
        return f"seed {r['seed']}: no log (see {Path(r['log']).parent}/output.txt)"
    reached = "reached" if r["status"] == "success" else "did NOT reach"
    return (f"seed {r['seed']}: {reached} the target, quality {_quality(r['quality'])} at epoch_num "
            f"{_number(r['epoch_num'])} ({r['evals']} evals), {r['minutes'] or 0:.2f} min to target, checker "
            f"{r['checker']}")


def _number(value) -> str:
    """epoch_num as the tables show it; '-' for a run that ended before its first evaluation."""
    return "-" if value is None else f"{value:.6g}"


def _quality(value) -> str:
    if isinstance(value, dict):
        return "/".join(f"{k} {v:.4f}" for k, v in value.items())
    return "-" if value is None else f"{value:.5f}"


def source_version() -> str:
    """The commit the sweep ran, and whether tracked files other than docs/ (where sweep tables go) differed."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "an unknown commit (no git)"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs")
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


def table(bench: str, results: list[dict], command: str, host: str = "", version: str = "") -> str:
    passed = sum(r["passed"] for r in results)
    minutes = [r["minutes"] for r in results if r.get("status") == "success" and r.get("minutes")]
    lines = [f"# Smoke-run seed sweep: {bench}", "",
             f"`{command}` on {datetime.date.today().isoformat()}: `make smoke BENCH={bench}` (the CPU config on the "
             "synthetic dataset, through run_local.sh and the official compliance checker) once per seed"
             + (f", at {version}" if version else "") + "." + (f" {host[0].upper()}{host[1:]}." if host else ""), "",
             f"**{passed}/{len(results)} seeds reached the target and passed the checker.**"
             + (f" Time to target: median {statistics.median(minutes):.2f} min, range {min(minutes):.2f}-"
                f"{max(minutes):.2f} min (2 CPU cores, shared)." if minutes else ""), "",
             "| seed | verdict | evaluations | last quality | epoch_num at the last evaluation | minutes to target |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in results:
        verdict = r.get("checker", "no log") if r["passed"] else f"FAILED ({r.get('status', 'no log')})"
        lines.append(f"| {r['seed']} | {verdict} | {r.get('evals', '-')} | {_quality(r.get('quality'))} "
                     f"| {_number(r.get('epoch_num'))} | {r.get('minutes') or 0:.2f} |" if "status" in r else
                     f"| {r['seed']} | {verdict} | - | - | - | - |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", help="benchmark folder, e.g. dlrm_dcnv2")
    parser.add_argument("--seeds", default="1-20", help="e.g. 1-20,1416050522")
    parser.add_argument("--fresh", action="store_true", help="run every seed again instead of resuming")
    parser.add_argument("--out", type=Path, default=None, help="table (default docs/sweeps/<bench>.md)")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if not (REPO_ROOT / args.bench / "train.py").is_file():
        parser.error(f"{args.bench}: no benchmark folder with a train.py")
    store = REPO_ROOT / "results" / "sweep" / args.bench
    store.mkdir(parents=True, exist_ok=True)
    host, version = host_line(), source_version()
    print(f"{host}; {version}", flush=True)
    results, spent = [], []
    for i, seed in enumerate(seeds, 1):
        saved = store / f"seed_{seed}.json"
        if saved.is_file() and not args.fresh:
            result, note = json.loads(saved.read_text()), " (kept from an earlier sweep)"
        else:
            result = run_seed(args.bench, seed, store)
            saved.write_text(json.dumps(result, indent=1) + "\n")
            spent.append(result["wall_s"])
            note = ""
        results.append(result)
        left = statistics.mean(spent) * (len(seeds) - i) / 60 if spent else 0.0
        print(f"[{i}/{len(seeds)}, ~{left:.0f} min left] {describe(result)}{note}", flush=True)
    passed = sum(r["passed"] for r in results)
    print(f"{args.bench}: {passed}/{len(results)} seeds reached the target and passed the checker")
    command = f"python3 -m common.sweep {args.bench} --seeds {args.seeds}"
    out = args.out or REPO_ROOT / "docs" / "sweeps" / f"{args.bench}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table(args.bench, results, command, host, version))
    print(f"wrote {out}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
