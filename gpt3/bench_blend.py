"""Time GPT-3's 0.5/0.5 blending of the two training files (`gpt3.data.blend`): every rank builds it at init.

    python3 -m gpt3.bench_blend [--samples 20000000] [--old-samples 2000000]

prints and writes docs/perf/gpt3_blend.md: the seconds `blend` takes for --samples blended samples now (the
round robin that equal weights reduce to, and the greedy loop that other weights run), and the loop this
project used before (NumPy's argmax per sample, as `tests/gpt3/test_data.py` restates Megatron's) on
--old-samples (it is linear in the samples: the per-sample time is measured, not modelled, and the full count's
time is that per-sample time x samples). 20,000,000 samples is the order of a 512-rank run's blending (the issue
that asked for this measured ~3 minutes per rank before).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from gpt3.data import _blend_greedy, blend

OUT = Path(__file__).resolve().parents[1] / "docs" / "perf" / "gpt3_blend.md"


def numpy_loop(weights, num_samples):
    """The implementation before 2026-12-02: one np.argmax per sample."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    which = np.zeros(num_samples, dtype=np.int64)
    within = np.zeros(num_samples, dtype=np.int64)
    counts = np.zeros(len(weights), dtype=np.int64)
    for i in range(num_samples):
        d = int(np.argmax(weights * max(i, 1) - counts))
        which[i], within[i] = d, counts[d]
        counts[d] += 1
    return which, within


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000_000)
    parser.add_argument("--old-samples", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    n, old_n = args.samples, args.old_samples
    load = os.getloadavg()[0]
    check = 100_000
    assert all(np.array_equal(a, b) for a, b in zip(blend([0.5, 0.5], check), numpy_loop([0.5, 0.5], check)))
    rows = [("before: NumPy argmax per sample (0.5/0.5)", old_n, seconds(numpy_loop, [0.5, 0.5], old_n)),
            ("now: 0.5/0.5, round robin (GPT-3's blend)", n, seconds(blend, [0.5, 0.5], n)),
            ("now: 0.3/0.7, greedy loop on Python floats", old_n, seconds(_blend_greedy, [0.3, 0.7], old_n))]
    lines = [f"# GPT-3 data blending at init ({n:,} samples)", "",
             f"Measured {date.today()} on {platform.node() or 'this machine'} ({os.cpu_count()} cores, "
             f"{platform.processor() or platform.machine()}), Python {platform.python_version()}, NumPy "
             f"{np.__version__}, load average {load:.1f} at the start (other jobs on the cores slow all rows alike): "
             f"`python3 -m gpt3.bench_blend --samples {n} --old-samples {old_n}`. Every rank "
             "builds the blend at init; all three give Megatron's sequence (checked on 100,000 samples here and "
             "in tests/gpt3/test_data.py).", "",
             f"| implementation | samples timed | seconds | us per sample | seconds for {n:,} |",
             "|---|---:|---:|---:|---:|"]
    for name, count, secs in rows:
        lines.append(f"| {name} | {count:,} | {secs:.3f} | {secs / count * 1e6:.3f} | {secs / count * n:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
