"""Package result logs into the MLCommons submission tree and run the official checkers.

    python3 -m compliance.package --org ORG --system compliance/systems/dgxh100_n1.json \\
        --bench resnet50 --out submission LOG1 ... LOG5
    python3 -m compliance.package --org ORG --system ... --all --out submission LOG ...

writes
    <out>/<ORG>/systems/<system>.json
    <out>/<ORG>/results/<system>/<benchmark>/result_<N>.txt
    <out>/<ORG>/benchmarks/<benchmark>/implementations/pytorch/   (this code)
then runs the package checker (which always exits 0: its verdict is read from
its text), the RCP checker (per benchmark) and the result summarizer, and
prints the score. `--all` packages the logs of several benchmarks into one
tree under one system description, each log going to the benchmark its
`submission_benchmark` names, and ends with a summary per benchmark: runs,
converged runs, RCP verdict, score, and NVIDIA's published v3.0 score for the
same benchmark and node count where there is one (`NVIDIA_SCORES`).

Logs of runs on synthetic data are refused unless `--dry-run` is given, and
so is a log of this code without `data_synthetic` (compliance.check's
DATA_SYNTHETIC_LOGGED: it was cut or edited), and so is a log whose
`cache_clear` is not true (the page cache was not dropped before it ran:
CLEAR_CACHES=0, or neither root nor sudo); a dry
run marks the system description as such and bypasses the RCP check, which
synthetic convergence cannot meet. `--system host` describes this machine.
A dry run whose tree fails only on a synthetic waiver of compliance.check
(DLRM's 89,137,319 validation rows) is checked, as compliance.check does for
one log, on a copy in <out>/synthetic_waiver/ with those values alone set to
the rules'; the verdict names the waiver, and the copy is what gets scored.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from compliance.check import RULESET, SYNTHETIC_WAIVERS, USAGE, summarize, with_rules_values
from compliance.describe_host import describe_host

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SUCCESS = "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !"
IMPLEMENTATION = "pytorch"


@dataclass(frozen=True)
class BenchmarkSpec:
    mlperf_name: str  # the logged submission_benchmark and the results folder name
    result_count: int  # runs per result (rules; mlperf_logging.benchmark_meta)
    digits: int = 1  # result_0.txt vs result_00.txt


BENCHMARKS = {
    "resnet50": BenchmarkSpec("resnet", 5),
    "bert": BenchmarkSpec("bert", 10),
    "dlrm_dcnv2": BenchmarkSpec("dlrm_dcnv2", 10),
    "gpt3": BenchmarkSpec("gpt3", 3),
    "maskrcnn": BenchmarkSpec("maskrcnn", 5),
    "retinanet": BenchmarkSpec("ssd", 5),
    "unet3d": BenchmarkSpec("unet3d", 40, digits=2),
    "rnnt": BenchmarkSpec("rnnt", 10),
}

FOLDER_OF = {spec.mlperf_name: folder for folder, spec in BENCHMARKS.items()}
# NVIDIA's v3.0 times to train, minutes, by (logged benchmark, nodes): the olympic mean of the successful runs
# in mlcommons/training_results_v3.0 NVIDIA/results/<system>/<benchmark>/result_*.txt (FACTS.md section 8;
# dgxh100_ngc23.04_* for 1 node, dgxh100_n<N>_ngc23.04_* for N nodes).
NVIDIA_SCORES = {
    ("resnet", 1): 13.591, ("resnet", 8): 2.663, ("resnet", 64): 0.498, ("resnet", 96): 0.369,
    ("bert", 1): 5.469, ("bert", 8): 0.885, ("bert", 64): 0.342, ("bert", 96): 0.253,
    ("dlrm_dcnv2", 1): 4.184, ("dlrm_dcnv2", 8): 1.760, ("dlrm_dcnv2", 16): 1.613,
    ("maskrcnn", 1): 19.168, ("maskrcnn", 8): 4.219, ("maskrcnn", 48): 1.466,
    ("ssd", 1): 37.009, ("ssd", 8): 6.511, ("ssd", 64): 1.906, ("ssd", 96): 1.511,
    ("unet3d", 1): 12.103, ("unet3d", 9): 1.818, ("unet3d", 54): 0.771,
    ("rnnt", 1): 16.686, ("rnnt", 8): 4.231, ("rnnt", 64): 1.649,
    ("gpt3", 64): 64.264, ("gpt3", 96): 44.816,
}

IMPLEMENTATION_FILES = ["README.md", "pyproject.toml", "Dockerfile.base", "requirements-container.txt",
                        "common", "compliance"]


class PackageError(RuntimeError):
    pass


def validate_logs(logs: list[Path], spec: BenchmarkSpec, org: str, dry_run: bool) -> None:
    if len(logs) != spec.result_count:
        raise PackageError(f"{spec.mlperf_name} needs exactly {spec.result_count} result logs, got {len(logs)}")
    seeds = {}
    for log in logs:
        run = summarize(log)
        problem = run.provenance_error() or run.integrity_error()
        if problem:
            raise PackageError(f"{log}: {problem}")
        if run.benchmark != spec.mlperf_name:
            raise PackageError(f"{log}: submission_benchmark is {run.benchmark!r}, expected {spec.mlperf_name!r}")
        if run.org != org:
            raise PackageError(f"{log}: submission_org is {run.org!r} but the package is for {org!r} "
                               "(set MLPERF_SUBMISSION_ORG when running)")
        if run.preflight:
            raise PackageError(f"{log}: a preflight log (compliance.preflight simulates a run and trains nothing); "
                               "it can never be packaged, not even as a dry run")
        if run.stop_after_evals:
            raise PackageError(f"{log}: a run cut short after {run.stop_after_evals} evaluation(s) on purpose "
                               "(STOP_AFTER_EVALS, a check of the run path); it can never be packaged")
        if run.synthetic and not dry_run:
            raise PackageError(f"{log}: this run trained on synthetic data and can never be a result; "
                               "pass --dry-run to package it as a dry run")
        if run.cache_clear is not True and not dry_run:
            raise PackageError(f"{log}: cache_clear is {run.cache_clear!r}: the page cache was not dropped before "
                               "this run (CLEAR_CACHES=0, or neither root nor sudo); a result needs it dropped")
        if run.seed in seeds:
            raise PackageError(f"{log}: seed {run.seed} already used by {seeds[run.seed]}")
        seeds[run.seed] = log


def load_system(system: str, org: str, dry_run: bool) -> dict:
    desc = describe_host() if system == "host" else json.loads(Path(system).read_text())
    desc["submitter"] = org
    if dry_run:
        desc["sw_notes"] = ("DRY RUN on synthetic data, not a result. " + desc.get("sw_notes", "")).strip()
    return desc


def copy_implementation(bench: str, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir(parents=True)
    for name in IMPLEMENTATION_FILES + [bench]:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / name)


def group_by_benchmark(logs: list[Path]) -> dict[str, list[Path]]:
    """{benchmark folder: its logs}, each log by the benchmark it logged (for --all)."""
    groups: dict[str, list[Path]] = {}
    for log in logs:
        name = summarize(log).benchmark
        if name not in FOLDER_OF:
            raise PackageError(f"{log}: submission_benchmark {name!r} is none of {sorted(FOLDER_OF)}")
        groups.setdefault(FOLDER_OF[name], []).append(log)
    return dict(sorted(groups.items()))


def build_tree(out: Path, org: str, system_desc: dict, runs: dict[str, list[Path]]) -> Path:
    """The submission tree of `runs` ({benchmark folder: its result logs}) under `out/org`."""
    org_dir = out / org
    if org_dir.exists():
        raise PackageError(f"{org_dir} already exists; choose another --out")
    system = system_desc["system_name"]
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", system):
        raise PackageError(f"system_name {system!r} is not a valid folder name")
    (org_dir / "systems").mkdir(parents=True)
    (org_dir / "systems" / f"{system}.json").write_text(json.dumps(system_desc, indent=4) + "\n")
    for bench, logs in runs.items():
        spec = BENCHMARKS[bench]
        results = org_dir / "results" / system / spec.mlperf_name
        results.mkdir(parents=True)
        for index, log in enumerate(logs):
            shutil.copy2(log, results / f"result_{index:0{spec.digits}d}.txt")
        copy_implementation(bench, org_dir / "benchmarks" / spec.mlperf_name / "implementations" / IMPLEMENTATION)
    return org_dir


def run_tool(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True)
    return (proc.stdout + proc.stderr).strip()


def check_package(org_dir: Path, dry_run: bool) -> tuple[bool, str]:
    args = ["mlperf_logging.package_checker", str(org_dir), USAGE, RULESET,
            "--log_output", str(org_dir.parent / "package_checker.log")]
    if dry_run:
        args.append("--rcp-bypass")
    output = run_tool(args, org_dir.parent)
    return PACKAGE_SUCCESS in output, output


def waiver_dir(out: Path, org: str) -> Path:
    return out / "synthetic_waiver" / org


def waiver_copy(org_dir: Path, system: str, runs: dict[str, list[Path]]) -> tuple[Path, list[str]] | None:
    """A dry run's tree copied to <out>/synthetic_waiver/<org> with each synthetic log's waived keys
    (compliance.check.SYNTHETIC_WAIVERS: a value no synthetic dataset can have, e.g. DLRM's 89,137,319 validation
    rows) set to the rules' values, every other line as logged; None when no packaged benchmark has a waiver.
    Also returns what was replaced, one line per benchmark."""
    waived = [bench for bench in runs if BENCHMARKS[bench].mlperf_name in SYNTHETIC_WAIVERS]
    if not waived:
        return None
    copy = waiver_dir(org_dir.parent, org_dir.name)
    shutil.copytree(org_dir, copy)
    notes = []
    for bench in waived:
        name = BENCHMARKS[bench].mlperf_name
        replaced = {}
        for result in sorted((copy / "results" / system / name).glob("result_*.txt")):
            text, logged = with_rules_values(result, summarize(result))
            result.write_text(text)
            replaced.update(logged)
        rules = SYNTHETIC_WAIVERS[name]
        notes.append(f"{name}: " + ", ".join(f"{key} logged {value}, the rules' {rules[key]} put in"
                                            for key, value in replaced.items()))
    return copy, notes


def read_scores(summary_json: Path) -> dict[str, dict]:
    """{logged benchmark: {score, gbs, samples, rcp}} from the summarizer's summary_detailed.json (written next to
    its --csv; it prints only the table's heading itself)."""
    scores = {}
    for row in json.loads(summary_json.read_text()) if summary_json.is_file() else []:
        for name in FOLDER_OF:
            if row.get(f"{name}:time_to_train") is not None:
                scores[name] = {"system": row["system"], "score": row[f"{name}:time_to_train"],
                                "gbs": row.get(f"{name}:GBS"), "samples": row.get(f"{name}:samples_to_converge"),
                                "rcp": row.get(f"{name}:RCP")}
    return scores


def score_table(summary_json: Path, benchmarks: list[str]) -> str:
    """The summarizer's score (olympic mean of run times, minutes) of each logged benchmark, as a table."""
    if not summary_json.is_file():
        return f"no score: the result summarizer wrote no {summary_json.name}"
    scores = read_scores(summary_json)
    rows = ["| system | benchmark | score (min) | global batch | epochs to converge | RCP |",
            "|---|---|---:|---:|---:|---|"]
    for name in benchmarks:
        if name in scores:
            s = scores[name]
            rows.append(f"| {s['system']} | {name} | {s['score']:.3f} | {s['gbs']} | {s['samples']} | {s['rcp']} |")
        else:
            rows.append(f"| - | {name} | no score | | | |")
    return "\n".join(rows)


def rcp_verdict(output: str) -> str:
    """The RCP checker's verdict line, shortened: 'PASSED', 'FAILED' or what it said."""
    for word in ("PASSED", "FAILED"):
        if f"RCP test {word}" in output:
            return word
    return output.strip().splitlines()[-1][:80] if output.strip() else "no output"


def benchmark_summary(runs: dict[str, list[Path]], rcp: dict[str, str], scores: dict[str, dict],
                      nodes: int | None, dry_run: bool) -> str:
    """Per benchmark: runs, converged, RCP verdict, our score and NVIDIA's at the same node count."""
    rows = ["| benchmark | runs | converged | RCP | score (min) | NVIDIA v3.0 at the same node count (min) |",
            "|---|---:|---:|---|---:|---:|"]
    for bench, logs in runs.items():
        name = BENCHMARKS[bench].mlperf_name
        converged = sum(summarize(log).status == "success" for log in logs)
        verdict = f"bypassed (dry run; checker said {rcp[bench]})" if dry_run else rcp[bench]
        score = f"{scores[name]['score']:.3f}" if name in scores else "no score"
        nvidia = NVIDIA_SCORES.get((name, nodes))
        rows.append(f"| {name} | {len(logs)} | {converged} | {verdict} | {score} | "
                    f"{f'{nvidia:.3f}' if nvidia is not None else '-'} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Packaged:
    ok: bool  # the package checker found no errors
    org_dir: Path
    scores: dict  # read_scores()
    text: str  # the checkers' output and the tables, as printed
    tables: str  # the score table, the summary per benchmark (several benchmarks) and the verdict line
    package_checker: str  # the package checker's own output (and its "== package_checker DIR" headings)


def package(out: Path, org: str, system: str, runs: dict[str, list[Path]], dry_run: bool) -> Packaged:
    """Validate, build the tree and run the three checkers; raises PackageError before writing anything."""
    out = out.resolve()  # the checkers run with `out` as their working directory
    runs = {bench: [log.resolve() for log in logs] for bench, logs in runs.items()}
    for bench, logs in runs.items():
        if not (REPO_ROOT / bench / "train.py").is_file():
            raise PackageError(f"{bench}/ has no implementation in this checkout yet")
        validate_logs(logs, BENCHMARKS[bench], org, dry_run)
    if dry_run and waiver_dir(out, org).exists():
        raise PackageError(f"{waiver_dir(out, org)} already exists; choose another --out")
    system_desc = load_system(system, org, dry_run)
    org_dir = build_tree(out, org, system_desc, runs)
    text = [f"packaged {sum(map(len, runs.values()))} logs of {', '.join(runs)} under {org_dir}"]
    ok, checker_output = check_package(org_dir, dry_run)
    text += [f"== package_checker {org_dir} {USAGE} {RULESET}{' --rcp-bypass' if dry_run else ''}", checker_output]
    checker_lines = len(text) - 2
    scored, waiver = org_dir, ""
    copy = waiver_copy(org_dir, system_desc["system_name"], runs) if dry_run and not ok else None
    if copy is not None:
        # As compliance.check does for one log: the tree fails, and a copy with only the waived keys changed is
        # checked; if it passes, the rules' objection was those keys alone, and the copy is what gets scored.
        scored, notes = copy
        ok, checker_output = check_package(scored, dry_run)
        waiver = (" except the waived synthetic-data rule(s) (" + "; ".join(notes) + f"; checked and scored: "
                  f"{scored})")
        text += [f"== package_checker {scored} {USAGE} {RULESET} --rcp-bypass (the synthetic-waiver copy: "
                 + "; ".join(notes) + ")", checker_output]
    package_checker = "\n".join(text[checker_lines:])
    rcp = {}
    for bench in runs:
        results_dir = org_dir / "results" / system_desc["system_name"] / BENCHMARKS[bench].mlperf_name
        output = run_tool(["mlperf_logging.rcp_checker", str(results_dir), "--rcp_usage", USAGE, "--rcp_version",
                           RULESET, "--log_output", str(out / f"rcp_checker_{bench}.log")], out)
        rcp[bench] = rcp_verdict(output)
        text += [f"== rcp_checker {results_dir}", output]
    (out / "summary_detailed.json").unlink(missing_ok=True)  # another package's in the same --out: not ours
    text.append(f"== result_summarizer {scored} {USAGE} {RULESET}")
    text.append(run_tool(["mlperf_logging.result_summarizer", str(scored), USAGE, RULESET, "--csv",
                          str(out / "summary.csv")], out))
    names = [BENCHMARKS[bench].mlperf_name for bench in runs]
    tables = [score_table(out / "summary_detailed.json", names)]
    scores = read_scores(out / "summary_detailed.json")
    if len(runs) > 1:
        nodes = system_desc.get("number_of_nodes")
        tables += ["", benchmark_summary(runs, rcp, scores, int(nodes) if str(nodes).isdigit() else None, dry_run)]
    tables.append(f"package checker: {'SUCCESS' if ok else 'FAILED'}{waiver if ok else ''}"
                  f"{' (dry run, RCP bypassed)' if dry_run else ''}")
    return Packaged(ok, org_dir, scores, "\n".join(text + tables), "\n".join(tables), package_checker)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="result logs, one per run")
    parser.add_argument("--org", required=True, help="submitting organisation (folder and submitter)")
    parser.add_argument("--system", required=True,
                        help="system description JSON (see compliance/systems/) or 'host' for this machine")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--bench", choices=sorted(BENCHMARKS), help="benchmark folder of all the logs")
    which.add_argument("--all", action="store_true", help="each log to the benchmark it logged")
    parser.add_argument("--out", type=Path, required=True, help="where to create <org>/")
    parser.add_argument("--dry-run", action="store_true",
                        help="accept synthetic-data runs and bypass RCP; the package is not a result")
    args = parser.parse_args(argv)
    try:
        missing = [str(log) for log in args.logs if not log.is_file()]
        if missing:
            raise PackageError(f"no such log file: {', '.join(missing)}")
        runs = group_by_benchmark(args.logs) if args.all else {args.bench: args.logs}
        result = package(args.out, args.org, args.system, runs, args.dry_run)
    except PackageError as err:
        print(f"compliance.package: {err}", file=sys.stderr)
        return 2
    print(result.text)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
