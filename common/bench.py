"""The benchmark scripts' harness (`python3 -m <bench>.bench`): timed training steps, their table, its file.

`time_steps` runs the benchmark's real `common.step.TrainStep` — warm-up
steps, then timed ones ended by a host-device sync (the loss monitor's
all-reduce and read, then `cuda.synchronize`), so queued GPU work is inside
the time. What the step is fed decides what is measured:
- `resident(batches)`: the same few batches, already in device memory — the
  step alone, the model's ceiling;
- the benchmark's real input pipeline (its DataLoader reading files in the
  real on-disk format, plus the host-to-device copy) — the step as training
  runs it. The ratio of the two shows a data bottleneck (1.0: none).
`step_alone_and_with_loader` measures both (resident, loaded, resident again;
the faster resident run counts). `write_table` prints the markdown table and
writes `docs/perf/<bench>_<device>.md`.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch

from common import dist
from common.step import TrainStep

REPO_ROOT = Path(__file__).resolve().parents[1]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with its core and torch thread counts."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return (f"{model.group(1).strip() if model else 'unknown'} CPU, {os.cpu_count()} cores "
            f"({torch.get_num_threads()} torch threads)")


def device_slug(device: torch.device) -> str:
    """`cpu`, or the GPU's short model name (`h100`, `h200`) for docs/perf/<bench>_<slug>.md."""
    if device.type != "cuda":
        return "cpu"
    name = device_name(device)
    short = re.search(r"\b([A-Z]+\d+[A-Z]*)\b", name.replace("NVIDIA", ""))
    return (short.group(1) if short else re.sub(r"\W+", "_", name)).lower()


def arguments(doc: str, precisions=("fp32", "bf16")) -> argparse.ArgumentParser:
    """The options every bench script takes; a benchmark adds its shapes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=precisions, default=None, help="default: GPU bf16, CPU fp32")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps before each measurement")
    parser.add_argument("--steps", type=int, default=None, help="timed steps of each measurement")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=None, help="the table (default docs/perf/<bench>_<device>.md)")
    return parser


def parse(parser: argparse.ArgumentParser, argv, *, warmup: tuple[int, int] | None = None,
          steps: tuple[int, int] | None = None) -> tuple[argparse.Namespace, torch.device]:
    """Parsed options and the device; unset --precision/--warmup/--steps take their (GPU, CPU) defaults."""
    args = parser.parse_args(argv)
    device = dist.select_device(dist.read_dist_env({}), args.device)
    which = 0 if device.type == "cuda" else 1
    args.precision = args.precision or ("bf16", "fp32")[which]
    if args.warmup is None and warmup:
        args.warmup = warmup[which]
    if args.steps is None and steps:
        args.steps = steps[which]
    return args, device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    steps: int
    seconds: float
    samples: int

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def step_ms(self) -> float:
        return 1000 * self.seconds / self.steps


def resident(batches: Iterable) -> Iterator:
    """The same batches over and over (build them on the device first): the step alone."""
    return itertools.cycle(list(batches))


def time_steps(step: TrainStep, batches: Iterator, *, warmup: int, steps: int, device: torch.device) -> Timing:
    """`warmup` untimed steps, then `steps` timed ones of the real training step on `batches`."""
    for _ in range(warmup):
        step(batches)
    step.monitor.drain()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(batches)
    stats = step.monitor.drain()  # host sync; a non-finite loss while timing is an error
    synchronize(device)
    return Timing(steps, time.perf_counter() - start, stats.samples)


def step_alone_and_with_loader(step: TrainStep, resident_batches: Iterable, loaded_batches: Iterator, *, warmup: int,
                               steps: int, device: torch.device) -> tuple[Timing, Timing]:
    """The step on resident batches, then fed by the real input pipeline, then resident again; the faster resident
    run counts (the first timed steps of a fresh model and optimizer can still be warming up, and a data
    bottleneck should not hide behind that)."""
    first = time_steps(step, resident(resident_batches), warmup=warmup, steps=steps, device=device)
    loaded = time_steps(step, loaded_batches, warmup=warmup, steps=steps, device=device)
    again = time_steps(step, resident(resident_batches), warmup=0, steps=steps, device=device)
    return (first if first.seconds <= again.seconds else again), loaded


@dataclass
class Row:
    """One measured configuration of a benchmark's table."""

    model: str
    batch: str
    precision: str
    alone: Timing
    loaded: Timing | None = None  # with the real input pipeline
    flops_per_sample: float | None = None  # model FLOPs of one training sample (forward + backward)
    anchor: str = "-"  # NVIDIA's v3.0 per-GPU throughput at the real shape
    extra: dict = field(default_factory=dict)
    # What one sample/s of this row is worth in the anchor's unit: 1 at the real shape; a slice of a larger model
    # (gpt3's layers) scales by its FLOPs per sample over the full model's.
    anchor_scale: float = 1.0


def number(x: float) -> str:
    """1,234.5 for large values, three significant digits for small ones (0.331, 12.4)."""
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}"


def table(title: str, command: str, notes: Iterable[str], rows: list[Row], unit: str = "samples") -> str:
    """The markdown table of `rows`, with the command, date and torch version that measured it."""
    extra = list(dict.fromkeys(k for r in rows for k in r.extra))
    header = (["model", "batch", "precision", "step (ms)", f"{unit}/s, step alone", f"{unit}/s with loader",
               "with loader / alone", "model TFLOP/s"] + extra + [f"NVIDIA v3.0 per H100 ({unit}/s)"])
    lines = [f"# {title}", "",
             f"Measured {datetime.date.today().isoformat()} with `{command}` (torch {torch.__version__}).", "",
             *(f"- {note}" for note in notes),
             "- with loader / alone: below 1, the input pipeline holds the step back (on a CPU it also takes cores "
             "from the step); \"alone\" is the faster of two resident runs, before and after the loader's.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(header) - 3)]
    for r in rows:
        loaded = "-" if r.loaded is None else number(r.loaded.samples_per_s)
        ratio = "-" if r.loaded is None else f"{r.loaded.samples_per_s / r.alone.samples_per_s:.2f}"
        tflops = "-" if r.flops_per_sample is None else number(r.flops_per_sample * r.alone.samples_per_s / 1e12)
        cells = [r.model, r.batch, r.precision, number(r.alone.step_ms), number(r.alone.samples_per_s), loaded,
                 ratio, tflops, *(str(r.extra.get(k, "-")) for k in extra), r.anchor]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def command(bench: str, argv) -> str:
    """The command line that measured a table, as a user would type it."""
    return " ".join(["python3 -m", f"{bench}.bench", *(sys.argv[1:] if argv is None else argv)])


def row_record(row: Row) -> dict:
    """One row as the JSON beside its table: what `tools.gpu_check` summarizes across benchmarks."""
    timing = lambda t: None if t is None else {**dataclasses.asdict(t), "samples_per_s": t.samples_per_s}  # noqa: E731
    return {"model": row.model, "batch": row.batch, "precision": row.precision, "alone": timing(row.alone),
            "loaded": timing(row.loaded), "flops_per_sample": row.flops_per_sample, "anchor": row.anchor,
            "anchor_per_s": anchor_value(row.anchor), "anchor_scale": row.anchor_scale,
            "extra": {k: str(v) for k, v in row.extra.items()}}


def anchor_value(anchor: str) -> float | None:
    """NVIDIA's per-GPU figure of a row as a number in the table's unit: its first number ('7,009' -> 7009;
    '0.331 (678 tokens/s)' -> 0.331), a range's midpoint ('1.6-1.8M' -> 1.7e6); None for '-'."""
    found = re.match(r"\s*~?([\d,]*\.?\d+)(?:\s*-\s*([\d,]*\.?\d+))?\s*([kKM]?)", anchor)
    if not found:
        return None
    low, high, scale = found.groups()
    value = float(low.replace(",", "")) if high is None else (float(low.replace(",", "")) +
                                                              float(high.replace(",", ""))) / 2
    return value * {"": 1, "k": 1e3, "K": 1e3, "M": 1e6}[scale]


def write_table(text: str, bench: str, device: torch.device, out: Path | None = None,
                rows: list[Row] | None = None, unit: str = "samples") -> Path:
    """Print a benchmark's markdown table and write it to `out` (default docs/perf/<bench>_<device slug>.md);
    with `rows`, also their numbers as JSON beside it (`out` with .json), for `tools.gpu_check`'s summary."""
    print(text)
    out = out or REPO_ROOT / "docs" / "perf" / f"{bench}_{device_slug(device)}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if rows is not None:
        record = {"bench": bench, "device": device_name(device), "device_slug": device_slug(device),
                  "torch": torch.__version__, "unit": unit, "date": datetime.date.today().isoformat(),
                  "rows": [row_record(r) for r in rows]}
        out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return out
