"""DLRM-DCNv2 training throughput (samples/s) on the present device, data loading excluded.

Times full training steps of the real run (`dlrm_dcnv2.train.Trainer.train_step`:
forward through the sharded EmbeddingBagCollection and the dense part, BCE, backward
with the fused embedding Adagrad, dense Adagrad step) on batches of uniformly random
ids built once, before timing, in device memory. Prints a markdown table and writes it
to docs/perf/dlrm_dcnv2_<device>.md. One process: with one rank every table is local.

    python3 -m dlrm_dcnv2.bench                                          # CPU: small model; full dense part
    python3 -m dlrm_dcnv2.bench --model full --full-tables 26 --batch 6912 --precision bf16   # one H100
    python3 -m dlrm_dcnv2.bench --model full --full-tables 4 --batch 6912                    # 4 tables of 40M+

`--model full` is the benchmark's dense part (dim 128, DCNv2 rank 512, both MLPs) with
the first `--full-tables` tables at their published row counts and the others capped
at 1,000 rows (26 full tables need ~200 GB with Adagrad state: more than one GPU).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import time
from pathlib import Path

import numpy as np
import torch

from common import dist
from common.perf import device_name, write_table
from dlrm_dcnv2 import data
from dlrm_dcnv2.config import RULES, DlrmRunConfig
from dlrm_dcnv2.model import SMALL_TABLE_ROWS_CAP, ModelShape
from dlrm_dcnv2.train import Trainer

# NVIDIA's v3.0 1x DGX H100 result logs (FACTS.md §5): 4.184 min, ~1.6-1.8M samples/s per H100.
NVIDIA_H100_SAMPLES_PER_S = "1.6-1.8M"
CPU_RUNS = [("small", 0, 2048, 3, 20), ("full", 0, 512, 1, 3)]  # model, full tables, batch, warm-up, timed


def bench_shape(model: str, full_tables: int) -> ModelShape:
    if model == "small":
        return ModelShape.small()
    full = ModelShape.full()
    rows = tuple(n if i < full_tables else min(n, SMALL_TABLE_ROWS_CAP) for i, n in enumerate(full.table_rows))
    return dataclasses.replace(full, table_rows=rows)


class ArrayPart:
    """Rows held in memory, in the readers' interface."""

    def __init__(self, rows: data.Rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, start: int, stop: int) -> data.Rows:
        r = self.rows
        return data.Rows(r.labels[start:stop], r.dense[start:stop], [s[start:stop] for s in r.sparse])


def random_rows(rng: np.random.Generator, n: int, shape: ModelShape) -> data.Rows:
    return data.Rows(rng.integers(0, 2, n, dtype=np.int32),
                     np.log(rng.integers(0, 100, (n, RULES.num_dense)) + 3.0).astype(np.float32),
                     [rng.integers(0, rows, (n, h), dtype=np.int32) for rows, h in zip(shape.table_rows, shape.hotness)])


def measure(model: str, full_tables: int, batch: int, warmup: int, timed: int, precision: str,
            device: torch.device) -> dict:
    shape = bench_shape(model, full_tables)
    cfg = DlrmRunConfig(global_batch=batch, eval_batch=batch, lr=0.004, mixed_precision=precision == "bf16",
                        model_size="small" if model == "small" else "full", device=device.type)
    rng = np.random.default_rng(0)
    batches = [random_rows(rng, batch, shape) for _ in range(4)]
    source = data.RowSource([ArrayPart(batches[0])])
    trainer = Trainer(cfg, shape, device, source, source)
    on_device = [data.to_batch(rows, shape.hotness, device) for rows in batches]
    for step in range(warmup):
        trainer.train_step(on_device[step % 4])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for step in range(timed):
        loss = trainer.train_step(on_device[step % 4])
    float(loss)  # host sync
    sync()
    seconds = (time.perf_counter() - start) / timed
    params = sum(shape.table_rows) * shape.embedding_dim
    return {"model": model, "full tables": full_tables, "embedding params": f"{params / 1e6:,.1f}M",
            "precision": precision, "batch": batch, "steps": f"{warmup} + {timed}",
            "step (ms)": f"{seconds * 1e3:,.1f}", "samples/s": f"{batch / seconds:,.0f}",
            "NVIDIA v3.0 per H100": NVIDIA_H100_SAMPLES_PER_S if model == "full" else "-"}


def table(rows: list[dict], device: torch.device, load: tuple[float, float, float]) -> str:
    header = list(rows[0])
    lines = [f"# DLRM-DCNv2 training throughput on {device_name(device)}", "",
             f"Measured {datetime.date.today()} with `python3 -m dlrm_dcnv2.bench` (torch {torch.__version__}, "
             f"one process). Full training steps (sharded embedding lookup, dense forward, BCE, backward with the "
             "fused embedding Adagrad, dense Adagrad step) on uniformly random ids with the published hotness "
             "(214 ids per sample), built in device memory before timing: no data loading, no evaluation.", "",
             "- small: the CPU smoke model (tables <= 1,000 rows, dim 16); full: the benchmark's dense part "
             "(dim 128, DCNv2 rank 512), the first `full tables` tables at their published sizes, the rest "
             "capped at 1,000 rows.",
             "- anchor: NVIDIA v3.0, 1x DGX H100 (4.184 min, HugeCTR): ~1.6-1.8M samples/s per H100.",
             f"- load average before measuring: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min) on "
             f"{os.cpu_count()} CPUs; other processes on a shared machine slow multi-threaded CPU kernels a lot.",
             "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["small", "full"], default=None, help="default: the CPU_RUNS set")
    parser.add_argument("--full-tables", type=int, default=0, help="tables at their published size (full model)")
    parser.add_argument("--batch", type=int, default=6912, help="rows per step")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/perf/dlrm_dcnv2_<cpu|h100|...>.md")
    args = parser.parse_args(argv)
    denv = dist.read_dist_env()
    device = dist.select_device(denv, "auto")
    dist.ensure_process_group(device)
    runs = ([(args.model, args.full_tables, args.batch, args.warmup, args.steps)] if args.model
            else CPU_RUNS)
    load = os.getloadavg()
    rows = [measure(*run, precision=args.precision, device=device) for run in runs]
    text = table(rows, device, load)
    write_table(text, "dlrm_dcnv2", device, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
