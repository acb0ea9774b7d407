"""Package result logs into the MLCommons submission tree and run the official checkers.

    python3 -m compliance.package --org ORG --system compliance/systems/dgxh100_n1.json \\
        --bench resnet50 --out submission LOG1 ... LOG5

writes
    <out>/<ORG>/systems/<system>.json
    <out>/<ORG>/results/<system>/<benchmark>/result_<N>.txt
    <out>/<ORG>/benchmarks/<benchmark>/implementations/pytorch/   (this code)
then runs the package checker (which always exits 0: its verdict is read from
its text), the RCP checker and the result summarizer, and prints the score.

Logs of runs on synthetic data are refused unless `--dry-run` is given, and
so is a log of this code without `data_synthetic` (compliance.check's
DATA_SYNTHETIC_LOGGED: it was cut or edited); a dry
run marks the system description as such and bypasses the RCP check, which
synthetic convergence cannot meet. `--system host` describes this machine.
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

from compliance.check import RULESET, USAGE, summarize
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
        if run.provenance_error():
            raise PackageError(f"{log}: {run.provenance_error()}")
        if run.benchmark != spec.mlperf_name:
            raise PackageError(f"{log}: submission_benchmark is {run.benchmark!r}, expected {spec.mlperf_name!r}")
        if run.org != org:
            raise PackageError(f"{log}: submission_org is {run.org!r} but the package is for {org!r} "
                               "(set MLPERF_SUBMISSION_ORG when running)")
        if run.synthetic and not dry_run:
            raise PackageError(f"{log}: this run trained on synthetic data and can never be a result; "
                               "pass --dry-run to package it as a dry run")
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


def build_tree(out: Path, org: str, system_desc: dict, bench: str, logs: list[Path]) -> Path:
    spec = BENCHMARKS[bench]
    org_dir = out / org
    if org_dir.exists():
        raise PackageError(f"{org_dir} already exists; choose another --out")
    system = system_desc["system_name"]
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", system):
        raise PackageError(f"system_name {system!r} is not a valid folder name")
    (org_dir / "systems").mkdir(parents=True)
    (org_dir / "systems" / f"{system}.json").write_text(json.dumps(system_desc, indent=4) + "\n")
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


def score_table(summary_json: Path, benchmark: str) -> str:
    """The summarizer's score (olympic mean of run times, minutes) as a table.

    With --csv the summarizer writes summary_detailed.json next to the CSV;
    it prints only the table's heading itself.
    """
    if not summary_json.is_file():
        return f"no score: the result summarizer wrote no {summary_json.name}"
    rows = ["| system | benchmark | score (min) | global batch | epochs to converge | RCP |",
            "|---|---|---:|---:|---:|---|"]
    for row in json.loads(summary_json.read_text()):
        score = row.get(f"{benchmark}:time_to_train")
        if score is None:
            continue
        rows.append(f"| {row['system']} | {benchmark} | {score:.3f} | {row.get(f'{benchmark}:GBS')} "
                    f"| {row.get(f'{benchmark}:samples_to_converge')} | {row.get(f'{benchmark}:RCP')} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path, help="result logs, one per run")
    parser.add_argument("--org", required=True, help="submitting organisation (folder and submitter)")
    parser.add_argument("--system", required=True,
                        help="system description JSON (see compliance/systems/) or 'host' for this machine")
    parser.add_argument("--bench", required=True, choices=sorted(BENCHMARKS), help="benchmark folder")
    parser.add_argument("--out", type=Path, required=True, help="where to create <org>/")
    parser.add_argument("--dry-run", action="store_true",
                        help="accept synthetic-data runs and bypass RCP; the package is not a result")
    args = parser.parse_args(argv)

    spec = BENCHMARKS[args.bench]
    # the checkers run with --out as their working directory: make every path absolute
    args.out, args.logs = args.out.resolve(), [log.resolve() for log in args.logs]
    try:
        if not (REPO_ROOT / args.bench / "train.py").is_file():
            raise PackageError(f"{args.bench}/ has no implementation in this checkout yet")
        validate_logs(args.logs, spec, args.org, args.dry_run)
        system_desc = load_system(args.system, args.org, args.dry_run)
        org_dir = build_tree(args.out, args.org, system_desc, args.bench, args.logs)
    except PackageError as err:
        print(f"compliance.package: {err}", file=sys.stderr)
        return 2
    print(f"packaged {len(args.logs)} {spec.mlperf_name} logs under {org_dir}")

    ok, output = check_package(org_dir, args.dry_run)
    print(f"== package_checker {org_dir} {USAGE} {RULESET}{' --rcp-bypass' if args.dry_run else ''}")
    print(output)
    results_dir = org_dir / "results" / system_desc["system_name"] / spec.mlperf_name
    print(f"== rcp_checker {results_dir}")
    print(run_tool(["mlperf_logging.rcp_checker", str(results_dir), "--rcp_usage", USAGE,
                    "--rcp_version", RULESET, "--log_output", str(args.out / "rcp_checker.log")], args.out))
    print(f"== result_summarizer {org_dir} {USAGE} {RULESET}")
    csv = args.out / "summary.csv"
    print(run_tool(["mlperf_logging.result_summarizer", str(org_dir), USAGE, RULESET, "--csv", str(csv)],
                   args.out))
    print(score_table(args.out / "summary_detailed.json", spec.mlperf_name))
    print(f"package checker: {'SUCCESS' if ok else 'FAILED'}{' (dry run, RCP bypassed)' if args.dry_run else ''}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
