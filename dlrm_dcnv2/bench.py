"""DLRM-DCNv2 training throughput (samples/s): the step alone, and with the real input pipeline.

Times the real training step (`dlrm_dcnv2.parallelize`, `dlrm_dcnv2.train.build_step`:
forward through the sharded EmbeddingBagCollection and the dense part, BCE, backward
with the fused embedding Adagrad, dense Adagrad step) through `common.bench`, twice: on
batches of uniformly random ids built once in device memory, and fed by the real reader:
a day in the reference's numpy layout (written first with `dlrm_dcnv2.data.write_day`),
memory-mapped, batched, id-checked and copied to the device by `dlrm_dcnv2.data`.
Prints a markdown table and writes it to docs/perf/dlrm_dcnv2_<device>.md. One
process: with one rank every table is local.

    python3 -m dlrm_dcnv2.bench                                          # CPU: debug model; full dense part
    python3 -m dlrm_dcnv2.bench --model full --full-tables 26 --batch 6912 --precision bf16   # one H100
    python3 -m dlrm_dcnv2.bench --model full --full-tables 4 --batch 6912                    # 4 tables of 40M+

`--model full` is the benchmark's dense part (dim 128, DCNv2 rank 512, both MLPs) with
the first `--full-tables` tables at their published row counts and the others capped
at 1,000 rows (26 full tables need ~200 GB with Adagrad state: more than one GPU).

`--embeddings torch` (the default where TorchRec is not installed, as on the GPU
check's machine) keeps the same tables in plain `torch.nn.EmbeddingBag`s with sparse
gradients and one `torch.optim.Adagrad` for every parameter, instead of TorchRec's
sharded collection and FBGEMM's fused Adagrad: the same model and step, slower
embedding kernels (and a full-size Adagrad state: 2x the tables' memory). Its rows
say so.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import bench, dist
from common.precision import Precision
from dlrm_dcnv2 import data
from dlrm_dcnv2.config import RULES
from dlrm_dcnv2.model import SMALL_TABLE_ROWS_CAP, DLRMDCNv2, ModelShape
from dlrm_dcnv2.train import build_step

# NVIDIA's v3.0 1x DGX H100 result logs (FACTS.md §5): 4.184 min, ~1.6-1.8M samples/s per H100.
NVIDIA_H100_SAMPLES_PER_S = "1.6-1.8M"
CPU_RUNS = [("debug", 0, 2048, 3, 20), ("full", 0, 512, 1, 3)]  # model, full tables, batch, warm-up, timed


def bench_shape(model: str, full_tables: int) -> ModelShape:
    if model == "debug":
        return ModelShape.small()
    full = ModelShape.full()
    rows = tuple(n if i < full_tables else min(n, SMALL_TABLE_ROWS_CAP) for i, n in enumerate(full.table_rows))
    return dataclasses.replace(full, table_rows=rows)


def random_rows(rng: np.random.Generator, n: int, shape: ModelShape) -> data.Rows:
    return data.Rows(rng.integers(0, 2, n, dtype=np.int32),
                     np.log(rng.integers(0, 100, (n, RULES.num_dense)) + 3.0).astype(np.float32),
                     [rng.integers(0, rows, (n, h), dtype=np.int32)
                      for rows, h in zip(shape.table_rows, shape.hotness)])


def default_embeddings() -> str:
    """TorchRec's sharded collection where TorchRec and FBGEMM import, else the torch-only fallback (FBGEMM built
    for another torch fails to load its library: that counts as not installed)."""
    try:
        import fbgemm_gpu  # noqa: F401
        import torchrec  # noqa: F401
    except (ImportError, OSError):
        return "torch"
    return "torchrec"


def build_model(shape: ModelShape, embeddings: str, device: torch.device, lr: float, batch: int):
    """(model, optimizer): TorchRec's as train.py builds them, or the torch-only fallback (module docstring)."""
    if embeddings == "torchrec":
        from dlrm_dcnv2.parallelize import build_optimizer, parallelize_dlrm

        dlrm = parallelize_dlrm(DLRMDCNv2(shape, device=torch.device("meta")), device=device, lr=lr, local_batch=batch)
        return dlrm, build_optimizer(dlrm, lr)
    dlrm = DLRMDCNv2(shape, device=device, embeddings="torch")
    return dlrm, torch.optim.Adagrad(dlrm.parameters(), lr=lr, eps=RULES.adagrad_epsilon)


def measure(model: str, full_tables: int, batch: int, warmup: int, timed: int, precision: str,
            device: torch.device, files: Path, embeddings: str = "torchrec") -> bench.Row:
    shape = bench_shape(model, full_tables)
    prec = Precision(precision, device.type)
    step = build_step(*build_model(shape, embeddings, device, 0.004, batch), prec, device)
    kjt = embeddings == "torchrec"
    rng = np.random.default_rng(0)
    resident = [data.to_batch(random_rows(rng, batch, shape), shape.hotness, device, kjt=kjt) for _ in range(4)]
    data.write_day(files, 0, random_rows(rng, 4 * batch, shape))  # the real reader cycles over one day's file
    day = data.RowSource([data.NumpyDay(files, 0, shape)])
    batches = itertools.chain.from_iterable(
        data.train_batches(day, batch, 0, 1, shape.hotness, device, kjt=kjt) for _ in itertools.count())
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=warmup, steps=timed, device=device)
    params = sum(shape.table_rows) * shape.embedding_dim
    name = f"{model} ({full_tables} full tables)" if model == "full" else model
    if not kjt:
        name += ", nn.EmbeddingBag fallback (no TorchRec)"
    return bench.Row(name, str(batch), precision, alone, loaded, None,
                     NVIDIA_H100_SAMPLES_PER_S if model == "full" else "-", {"embedding params": f"{params / 1e6:,.1f}M"})


def main(argv=None) -> int:
    parser = bench.arguments(__doc__)
    parser.add_argument("--model", choices=["debug", "full"], default=None, help="default: the CPU_RUNS set")
    parser.add_argument("--full-tables", type=int, default=0, help="tables at their published size (full model)")
    parser.add_argument("--batch", type=int, default=6912, help="rows per step")
    parser.add_argument("--embeddings", choices=["torchrec", "torch"], default=None,
                        help="TorchRec's sharded tables, or the torch.nn.EmbeddingBag fallback (default: TorchRec "
                             "where it is installed)")
    args, device = bench.parse(parser, argv, warmup=(5, 5), steps=(30, 30))
    embeddings = args.embeddings or default_embeddings()
    if embeddings == "torch" and not args.embeddings:
        print("dlrm_dcnv2.bench: TorchRec/FBGEMM not installed; measuring the torch.nn.EmbeddingBag fallback")
    dist.ensure_process_group(device)
    runs = ([(args.model, args.full_tables, args.batch, args.warmup, args.steps)] if args.model
            else CPU_RUNS)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(*run, precision=args.precision, device=device, files=Path(tmp) / str(i),
                        embeddings=embeddings) for i, run in enumerate(runs)]
    notes = [("one process; full training steps (sharded embedding lookup, dense forward, BCE, backward with the "
              "fused embedding Adagrad, dense Adagrad step)" if embeddings == "torchrec" else
              "one process; full training steps of the torch-only fallback (TorchRec/FBGEMM not used: "
              "torch.nn.EmbeddingBag lookups with sparse gradients, dense forward, BCE, backward, one "
              "torch.optim.Adagrad step over every parameter)") +
             ", no evaluation; ids uniformly random with the published hotness (214 ids per sample).",
             "step alone: batches built in device memory; with loader: a day in the reference's numpy layout, "
             "memory-mapped, batched, id-checked and copied to the device by `dlrm_dcnv2.data`.",
             "debug: the CPU smoke model (tables <= 1,000 rows, dim 16); full: the benchmark's dense part (dim 128, "
             "DCNv2 rank 512), the first `full tables` tables at their published sizes, the rest capped at 1,000 rows.",
             "anchor: NVIDIA v3.0, 1x DGX H100 (4.184 min, HugeCTR): ~1.6-1.8M samples/s per H100.",
             f"load average before measuring: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min) on {os.cpu_count()} CPUs; "
             "other processes on a shared machine slow multi-threaded CPU kernels a lot."]
    text = bench.table(f"DLRM-DCNv2 training throughput on {bench.device_name(device)}",
                       bench.command("dlrm_dcnv2", argv), notes, rows, "samples")
    bench.write_table(text, "dlrm_dcnv2", device, args.out, rows, "samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
