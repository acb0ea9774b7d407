"""`make gpu-check`: every benchmark's GPU path and speed, in one prepared call with a time budget (issue 16).

    python3 -m tools.gpu_check --out DIR                    # on a GPU machine (make gpu-check)
    python3 -m tools.gpu_check --device cpu --out DIR       # the CPU form CI runs (make gpu-check DEVICE=cpu)
    python3 -m tools.gpu_check --collect DIR                # copy a GPU run's tables into docs/perf/

For every benchmark folder present (`--only` narrows it), three stages, each a
child process with its own budget, killed (its whole process group) if it
overruns, and skipped with a printed reason when the time left is below it:

1. smoke — the benchmark's synthetic dataset (`python3 -m <b>.synthetic`),
   then its real `train.py` on it with its CPU config (the debug model) and
   DEVICE=<device> PRECISION=bf16 PROCESS_GROUP=always (a one-rank NCCL
   group on a GPU, gloo on a CPU) STOP_AFTER_EVALS=1: training steps, one
   evaluation, run_stop `aborted`. It passes when the official compliance
   checker (ruleset 3.0.0) finds nothing wrong but the quality target, which
   a run stopped after its first evaluation is not meant to reach. On a GPU
   the smokes run side by side (the debug models are small); on a CPU one at
   a time, and by default only gpt3's (the CPU form's check of the stage itself).
2. bench — `python3 -m <b>.bench` at NVIDIA's per-GPU shape (FACTS.md §5;
   on a CPU tiny shapes, one timed step): the step alone and with the real
   input pipeline, writing `<b>_<device>.md` and its JSON under DIR/perf/.
3. compile — the same with `--compile`, for the benchmarks that have it
   (`<b>_<device>_compile.md`); on a CPU only with `--stages ...,compile`.

Then DIR/gpu_summary.md: every stage's verdict and time, and per measured row
samples/s, the ratio to NVIDIA's v3.0 per-H100 figure, model TFLOP/s and its
fraction of the device's dense bf16 peak (H100 SXM and H200: 989 TFLOP/s).
DIR/gpu_check.json holds the same, and every child's output is kept in
DIR/logs/. The exit status is 1 when a stage failed or timed out (a skipped
stage is not a failure), else 0.

The machine it is meant for starts bare and offline (PyTorch, torchvision,
torchaudio and Triton there): `tools/gpu_wheels.sh` downloads the wheels of
`requirements-gpu-check.txt` to carry along. A benchmark whose dependencies are
missing there is skipped by name (dlrm_dcnv2's smoke without TorchRec/FBGEMM;
its bench then measures the `torch.nn.EmbeddingBag` fallback and says so).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHES = ("resnet50", "bert", "gpt3", "dlrm_dcnv2", "retinanet", "maskrcnn", "unet3d", "rnnt")
COMPILES = ("resnet50", "bert", "retinanet", "maskrcnn", "unet3d", "rnnt")  # bench.py --compile
PEAK_BF16_TFLOPS = {"h100": 989.0, "h200": 989.0}  # dense, SXM (NVIDIA's data sheets)
# Modules a stage cannot run without. dlrm_dcnv2's bench falls back to torch.nn.EmbeddingBag without TorchRec
# (its table says so); its train.py cannot.
NEEDS = {("dlrm_dcnv2", "smoke"): ("torchrec", "fbgemm_gpu")}

# NVIDIA's per-GPU shapes (FACTS.md §5). DLRM: the dense part and 4 tables at full size (26 with Adagrad
# state need ~200 GB); GPT-3: a full-width slice with as many layers as fit.
GPU_ARGS = {
    "resnet50": ["--batch", "400", "--size", "224", "--channels-last"],
    "bert": ["--model", "full", "--batch", "48", "--packing", "2"],
    "gpt3": ["--layers", "auto"],
    "dlrm_dcnv2": ["--model", "full", "--full-tables", "4", "--batch", "6912"],
    "retinanet": ["--model", "full", "--batch", "32", "--size", "800"],
    "maskrcnn": ["--model", "full", "--batch", "12"],
    "unet3d": ["--model", "full", "--batch", "7", "--size", "128"],
    "rnnt": ["--model", "full", "--batch", "192"],
}
# The CPU form: the same scripts at tiny shapes, so that the check itself cannot rot between GPU runs.
CPU_ARGS = {
    "resnet50": ["--batch", "2", "--size", "32", "--workers", "0"],
    "bert": ["--model", "debug", "--batch", "2", "--workers", "0"],
    "gpt3": ["--layers", "1", "--hidden", "128", "--minibs", "1"],
    "dlrm_dcnv2": ["--model", "debug", "--batch", "64"],
    "retinanet": ["--model", "debug", "--batch", "1", "--size", "128", "--workers", "0"],
    "maskrcnn": ["--model", "debug", "--batch", "1", "--size", "96", "--workers", "0"],
    "unet3d": ["--model", "debug", "--batch", "1", "--size", "32", "--workers", "0"],
    "rnnt": ["--model", "debug", "--batch", "2", "--duration", "0.5", "--workers", "0"],
}
CPU_STEPS = ["--warmup", "1", "--steps", "1"]
# Seconds a stage may take (GPU, CPU); a stage is skipped when less than its budget is left.
BUDGET_S = {"smoke": (240, 120), "bench": (75, 45), "compile": (150, 240)}


@dataclass
class Stage:
    bench: str
    kind: str  # smoke | bench | compile
    status: str = "pending"  # passed | failed | timed out | skipped
    seconds: float = 0.0
    detail: str = ""
    output: str = ""  # its log under DIR/logs/
    table: str = ""  # bench/compile: the table it wrote


class Clock:
    """The whole check's budget: what is left of it, and whether a stage fits."""

    def __init__(self, total_s: float):
        self.total_s, self.start = total_s, time.monotonic()

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def admits(self, stage: Stage, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        stage.status = "skipped"
        stage.detail = f"would overrun: its budget is {need_s:.0f} s, {max(self.left(), 0):.0f} s of the check left"
        print(f"[gpu-check] {stage.bench} {stage.kind}: skipped, {stage.detail}", flush=True)
        return False


def run_child(cmd: list[str], env: dict, timeout_s: float, output: Path) -> tuple[int | None, float]:
    """(exit status, or None when it ran past `timeout_s` and its process group was killed; seconds)."""
    start = time.monotonic()
    with output.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(timeout_s, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    return rc, time.monotonic() - start


def missing_modules(bench: str, kind: str) -> list[str]:
    """What `NEEDS` names for this stage and does not import here (as dlrm_dcnv2.bench decides its fallback: a
    library built for another torch fails to load, OSError, and counts as missing)."""
    missing = []
    for name in NEEDS.get((bench, kind), ()):
        try:
            importlib.import_module(name)
        except (ImportError, OSError):
            missing.append(name)
    return missing


def ended_badly(stage: Stage, rc: int | None, ok: tuple[int, ...], wrote: bool, timeout_s: float,
                output: Path) -> bool:
    """Mark `stage` timed out (rc None) or failed (rc not in `ok`, or what it writes is missing; with its output's
    last line); True if so."""
    if rc is None:
        stage.status, stage.detail = "timed out", f"killed after {stage.seconds:.0f} s (budget {timeout_s:.0f} s)"
    elif rc not in ok or not wrote:
        tail = output.read_text().strip().splitlines()[-1:] or [""]
        stage.status, stage.detail = "failed", f"exit {rc}: {tail[0][:200]}"
    return stage.status in ("timed out", "failed")


def child_env(device: str, **extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1", **extra}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def cpu_config(bench: str) -> Path:
    configs = sorted((REPO / bench).glob("config_CPU_*.sh"))
    if len(configs) != 1:
        raise SystemExit(f"gpu-check: expected exactly one {bench}/config_CPU_*.sh, found {len(configs)}")
    return configs[0]


def target_only_failures(checker_output: str) -> tuple[bool, list[str]]:
    """(whether the checker's complaints are only about the unreached quality target, its complaints). The
    checker fails such a log with `Failed checks for eval_accuracy : v['value'] >= <target> ...` then
    `ERROR - FAILED`; any other failed check or error is a real one."""
    complaints = [line.strip() for line in checker_output.splitlines()
                  if re.search(r"\bFailed checks\b|\bERROR\b", line) and not re.fullmatch(r"ERROR -\s*FAILED",
                                                                                            line.strip())]
    return not [c for c in complaints if not c.startswith("Failed checks for eval_accuracy")], complaints


def smoke(stage: Stage, device: str, data_root: Path, logs: Path, timeout_s: float) -> None:
    from compliance.check import run_checker, summarize

    bench, output = stage.bench, logs / f"{stage.bench}_smoke.out"
    stage.output = str(output.relative_to(logs.parent))
    data, mllog = data_root / bench, logs / f"{bench}_smoke.log"
    # on a GPU, the GPU configs' kernels where a CPU config picks a CPU fast path (maskrcnn's ROI_ALIGN)
    gpu_kernels = {"ROI_ALIGN": "torchvision"} if device != "cpu" else {}
    env = child_env(device, DEVICE=device, PRECISION="bf16", PROCESS_GROUP="always", STOP_AFTER_EVALS="1",
                    **gpu_kernels)
    rc, took = run_child([sys.executable, "-m", f"{bench}.synthetic", str(data)], env, timeout_s, output)
    if rc == 0:
        rc, train_s = run_child([sys.executable, "-m", f"{bench}.train", "--config", str(cpu_config(bench)),
                                 "--data-dir", str(data), "--seed", "1", "--log-file", str(mllog)], env,
                                timeout_s - took, output)
        took += train_s
    stage.seconds = took
    # exit 1: run_stop aborted, as STOP_AFTER_EVALS ends a run
    if ended_badly(stage, rc, (0, 1), mllog.is_file(), timeout_s, output):
        return
    run = summarize(mllog)
    passed, checker = run_checker(mllog)
    only_target, complaints = target_only_failures(checker)
    with output.open("a") as out:
        out.write(f"\n== compliance checker on {mllog.name}\n{checker}\n")
    if run.stop_after_evals != 1 or run.status != "aborted":
        stage.status = "failed"
        stage.detail = f"expected a run stopped after 1 evaluation, got status {run.status}, {run.stop_after_evals}"
    elif passed or only_target:
        stage.status = "passed"
        stage.detail = (f"{run.benchmark}: 1 evaluation, run_stop aborted on purpose; checker: "
                        + ("SUCCESS" if passed else "only the unreached quality target"))
    else:
        stage.status, stage.detail = "failed", "checker: " + " | ".join(complaints)[:300]


def measure(stage: Stage, device: str, perf: Path, logs: Path, slug: str, timeout_s: float) -> None:
    bench, compile_ = stage.bench, stage.kind == "compile"
    output = logs / f"{bench}_{stage.kind}.out"
    stage.output = str(output.relative_to(logs.parent))
    table = perf / f"{bench}_{slug}{'_compile' if compile_ else ''}.md"
    args = (GPU_ARGS if device == "cuda" else CPU_ARGS)[bench] + ([] if device == "cuda" else CPU_STEPS)
    cmd = [sys.executable, "-m", f"{bench}.bench", "--device", device, *args, *(["--compile"] if compile_ else []),
           "--out", str(table)]
    rc, stage.seconds = run_child(cmd, child_env(device), timeout_s, output)
    if not ended_badly(stage, rc, (0,), table.with_suffix(".json").is_file(), timeout_s, output):
        stage.status, stage.table = "passed", str(table.relative_to(perf.parent))
        stage.detail = " ".join(args)


def device_of(device: str) -> tuple[str, str]:
    """(the device's name, its short name for file names), as `common.bench` writes them."""
    import torch

    from common.bench import device_name, device_slug

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu-check: --device cuda, but torch sees no GPU (make gpu-check DEVICE=cpu for the CPU form)")
    dev = torch.device(device)
    return device_name(dev), device_slug(dev)


def fmt(x: float | None, digits: str = ",.1f") -> str:
    return "-" if x is None else format(x, digits)


def summary(stages: list[Stage], out: Path, device: str, name: str, slug: str, wall_s: float) -> str:
    import torch

    peak = PEAK_BF16_TFLOPS.get(slug)
    lines = [f"# GPU check on {name}", "",
             f"`python3 -m tools.gpu_check --device {device}` (torch {torch.__version__}), "
             f"{time.strftime('%Y-%m-%d')}; {wall_s:.0f} s in all. Written by the check; nothing here is typed in.",
             "", "## Stages", "", "| benchmark | stage | verdict | seconds | detail |", "|---|---|---|---:|---|"]
    for s in stages:
        lines.append(f"| {s.bench} | {s.kind} | {s.status} | {s.seconds:.0f} | {s.detail.replace('|', '/')} |")
    lines += ["", "## Throughput", "",
              "Per row of each benchmark's table: the step alone (resident batches) and with its real input "
              "pipeline; NVIDIA's v3.0 per-H100 figure (FACTS.md §5, training end to end) and our step alone as a "
              "fraction of it (gpt3's slice counted in full-model sequences, by its FLOPs per sequence); model "
              "TFLOP/s where the benchmark counts FLOPs, and its fraction of the dense bf16 peak "
              f"({f'{peak:.0f} TFLOP/s' if peak else 'none known for this device'}).", "",
              "| benchmark | mode | model | batch | precision | unit/s alone | unit/s with loader | NVIDIA per H100 "
              "| alone / NVIDIA | model TFLOP/s | of peak |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in stages:
        if s.status != "passed" or not s.table:
            continue
        record = json.loads((out / s.table).with_suffix(".json").read_text())
        for row in record["rows"]:
            alone = row["alone"]["samples_per_s"]
            loaded = row["loaded"]["samples_per_s"] if row["loaded"] else None
            anchor = row["anchor_per_s"] and row["anchor_per_s"] / row.get("anchor_scale", 1.0)
            tflops = row["flops_per_sample"] * alone / 1e12 if row["flops_per_sample"] else None
            lines.append(" | ".join([
                f"| {s.bench}", "compile" if s.kind == "compile" else "eager", row["model"], row["batch"],
                row["precision"], f"{fmt(alone)} {record['unit']}", fmt(loaded), row["anchor"],
                fmt(alone / anchor if anchor else None, ".3g"), fmt(tflops),
                fmt(tflops / peak if tflops and peak else None, ".1%")]) + " |")
    return "\n".join(lines) + "\n"


def collect(out: Path, docs: Path = REPO / "docs" / "perf") -> list[Path]:
    """Copy a finished check's tables and summary into docs/perf/ (what a GPU session commits)."""
    if not (out / "gpu_summary.md").is_file():
        raise SystemExit(f"gpu-check --collect: {out} holds no gpu_summary.md; run the check into it first")
    copied = []
    for path in sorted((out / "perf").glob("*")) + [out / "gpu_summary.md"]:
        shutil.copy2(path, docs / path.name)
        copied.append(docs / path.name)
    return copied


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, help="folder for everything the check writes (created)")
    parser.add_argument("--only", default=",".join(BENCHES), help="benchmarks, comma-separated (default: all)")
    parser.add_argument("--stages", default=None, help="smoke,bench,compile (default: all three on a GPU; "
                        "smoke,bench on a CPU)")
    parser.add_argument("--smoke-only", default=None,
                        help="benchmarks whose smoke runs (default: every one on a GPU; on a CPU gpt3, whose "
                             "first evaluation comes soonest)")
    parser.add_argument("--budget-s", type=float, default=None, help="the whole check (default: GPU 450, CPU 300)")
    parser.add_argument("--data", type=Path, default=None, help="synthetic datasets (default: a temporary folder)")
    parser.add_argument("--collect", type=Path, default=None, metavar="DIR", help="copy DIR's tables to docs/perf/")
    args = parser.parse_args(argv)
    if args.collect:
        for path in collect(args.collect):
            print(f"copied {path.relative_to(REPO)}")
        return 0
    if args.out is None:
        parser.error("--out DIR is required (or --collect DIR)")
    gpu = args.device == "cuda"
    benches = [b for b in args.only.split(",") if b]
    unknown = [b for b in benches if b not in BENCHES or not (REPO / b).is_dir()]
    if unknown:
        parser.error(f"--only: no benchmark folder {', '.join(unknown)} (known: {', '.join(BENCHES)})")
    kinds = (args.stages or ("smoke,bench,compile" if gpu else "smoke,bench")).split(",")
    if set(kinds) - set(BUDGET_S):
        parser.error(f"--stages: {args.stages!r}; choose from smoke, bench, compile")
    smoked = (args.smoke_only or (",".join(benches) if gpu else "gpt3")).split(",")
    clock = Clock(args.budget_s if args.budget_s is not None else (450 if gpu else 300))
    name, slug = device_of(args.device)
    out, which = args.out, 0 if gpu else 1
    logs, perf = out / "logs", out / "perf"
    logs.mkdir(parents=True, exist_ok=True)
    perf.mkdir(exist_ok=True)
    print(f"[gpu-check] {name}: {', '.join(benches)}; stages {', '.join(kinds)}; budget {clock.total_s:.0f} s; "
          f"writing {out}", flush=True)
    stages = [Stage(b, k) for k in kinds for b in benches
              if (k != "compile" or b in COMPILES) and (k != "smoke" or b in smoked)]
    for s in stages:
        lacking = missing_modules(s.bench, s.kind)
        if lacking:
            s.status, s.detail = "skipped", f"needs {', '.join(lacking)}, not installed here"
    data_root = args.data or Path(tempfile.mkdtemp(prefix="gpu_check_data_"))
    try:
        pending = [s for s in stages if s.kind == "smoke" and s.status == "pending"]
        need = BUDGET_S["smoke"][which]
        if pending and clock.admits(pending[0], need):
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(pending) if gpu else 1) as pool:
                for s, _ in zip(pending, pool.map(
                        lambda s: smoke(s, args.device, data_root, logs, min(need, clock.left())), pending)):
                    print(f"[gpu-check] {s.bench} smoke: {s.status} in {s.seconds:.0f} s; {s.detail}", flush=True)
        else:
            for s in pending[1:]:
                s.status, s.detail = pending[0].status, pending[0].detail
        for s in stages:
            if s.kind == "smoke" or s.status != "pending":
                continue
            need = BUDGET_S[s.kind][which]
            if clock.admits(s, need):
                measure(s, args.device, perf, logs, slug, min(need, clock.left()))
                print(f"[gpu-check] {s.bench} {s.kind}: {s.status} in {s.seconds:.0f} s; {s.detail}", flush=True)
    finally:
        if args.data is None:
            shutil.rmtree(data_root, ignore_errors=True)
    wall = time.monotonic() - clock.start
    text = summary(stages, out, args.device, name, slug, wall)
    (out / "gpu_summary.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps({"device": name, "slug": slug, "wall_s": wall,
                                                    "stages": [asdict(s) for s in stages]}, indent=1) + "\n")
    print(text)
    bad = [f"{s.bench} {s.kind}" for s in stages if s.status in ("failed", "timed out")]
    print(f"[gpu-check] {'FAILED: ' + ', '.join(bad) if bad else 'no stage failed'}; {wall:.0f} s; wrote "
          f"{out / 'gpu_summary.md'}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
