"""BERT phase-2 training throughput (sequences/s): the step alone, and with the real input pipeline.

Times the real training step (`bert.train`'s parallelize order and `build_step`:
forward, masked-LM + next-sentence loss, backward, LAMB with the 1x DGX H100
config's hyperparameters) through `common.bench`, twice: on batches resident in
device memory — the model's ceiling — and fed by the real loader: packed HDF5
shards in NVIDIA's layout (written first, with `bert.data.write_packed`) read by
`bert.data.TrainStream` in DATALOADER workers, collated and copied to the
device. Each row holds `--packing` sequences of random token ids filling ~95% of
the 512 (debug: 128) positions, ~15% of each sequence masked. Prints a markdown
table and writes it to docs/perf/bert_<device>.md.

    python3 -m bert.bench                                                        # CPU: debug and BERT-large
    python3 -m bert.bench --model large --batch 48 --packing 2 --precision bf16  # one H100
    python3 -m bert.bench --model large --batch 48 --packing 2 --precision fp8   # one H100, Transformer Engine
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bert import data
from bert.config import BertRunConfig
from bert.model import BertForPreTraining, model_config
from bert.train import build_step, parallelize
from common import bench, loader
from common.precision import Precision

# NVIDIA's v3.0 1x DGX H100 BERT result logs (mlcommons/training_results_v3.0, NVIDIA/results/):
# 5.469 min to train, packed, FP8, evaluation included: ~970 sequences/s per H100.
NVIDIA_H100_SEQUENCES_PER_S = 970
# LR and LAMB settings of config_DGXH100_1x8x48x1_pack.sh (they do not change the step's cost)
H100_HPARAMS = dict(lr=0.00096, beta1=0.60466, beta2=0.85437, weight_decay=0.1)
CPU_RUNS = [("debug", 32, 3, 20), ("full", 2, 1, 3)]  # MODEL_SIZE, batch rows, warm-up steps, timed steps
GPU_RUN = (48, 10, 30)  # batch rows, warm-up steps, timed steps


def packed_rows(rng: np.random.Generator, rows: int, packing: int, seq_len: int, vocab: int,
                max_pred: int) -> data.Rows:
    """`rows` rows of `packing` random-token sequences (>= 16 tokens each) filling 90-100% of
    seq_len; round(15%) of each sequence's tokens after its first are masked (at most max_pred)."""
    fields = {name: [] for name in data.Rows.__dataclass_fields__}
    for _ in range(rows):
        used = int(seq_len * rng.uniform(0.90, 1.0))
        lens = 16 + (rng.dirichlet(np.ones(packing)) * (used - 16 * packing)).astype(np.int64)
        starts = np.cumsum(lens) - lens
        # sum(round(0.15 n)) <= 0.15 * seq_len + 1.5 fits data.row_predictions(max_pred) slots
        masked = np.clip(np.round(0.15 * lens), 1, max_pred).astype(np.int64)
        fields["input_ids"].append(rng.integers(0, vocab, lens.sum()))
        fields["segment_ids"].append(np.concatenate([np.arange(n) >= rng.integers(1, n) for n in lens]).astype(int))
        fields["masked_positions"].append(np.concatenate(
            [s + 1 + np.sort(rng.choice(n - 1, m, replace=False)) for s, n, m in zip(starts, lens, masked)]))
        fields["masked_ids"].append(rng.integers(0, vocab, masked.sum()))
        fields["seq_lens"].append(lens)
        fields["masked_lens"].append(masked)
        fields["nsp_labels"].append(rng.integers(0, 2, packing))
    return data.Rows(**fields)


def measure(args, model_size: str, batch: int, precision: str, warmup: int, steps: int, files: Path,
            device: torch.device) -> bench.Row:
    cfg = BertRunConfig(batch_size=batch, max_samples=10**9, max_steps=10**6, packing_factor=args.packing,
                        fused_lamb=args.fused_lamb, **H100_HPARAMS)
    arch, max_pred = model_config(model_size, cfg.dropout)
    torch.manual_seed(0)
    model = BertForPreTraining(arch)
    params = sum(p.numel() for p in model.parameters())  # the tied embedding/decoder counted once
    prec = Precision(precision, device.type)
    model = parallelize(model, device=device, world_size=1, precision=prec, torch_compile=args.compile)
    step = build_step(model, cfg, prec, device)
    rng = np.random.default_rng(0)
    shards = []
    for i in range(2):  # the real loader's input: packed shards of 8 batches each
        shards.append(files / f"{model_size}_{batch}" / f"part_{i:05d}")
        data.write_packed(shards[-1], packed_rows(rng, 8 * batch, args.packing, arch.max_positions, arch.vocab_size,
                                                  max_pred))
    stream = data.build_train_loader(shards, batch_size=batch, seq_len=arch.max_positions, max_predictions=max_pred,
                                     rank=0, world_size=1, seed=0, num_workers=args.workers,
                                     pin_memory=device.type == "cuda")
    first = iter(stream)
    resident = [data.to_device(next(first), device) for _ in range(4)]
    tokens_per_seq = sum(int(b["seq_lens"].sum()) for b in resident) / sum(int((b["seq_lens"] > 0).sum())
                                                                          for b in resident)
    batches = loader.on_device(stream, lambda b: data.to_device(b, device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=warmup, steps=steps,
                                                     device=device)
    full = model_size == "full"
    return bench.Row("BERT-large" if full else "debug (tiny)", f"{batch} rows x packing {args.packing}", precision,
                     alone, loaded, 6 * params * tokens_per_seq if full else None,
                     str(NVIDIA_H100_SEQUENCES_PER_S) if full else "-",
                     {"tokens/s": f"{alone.samples_per_s * tokens_per_seq:,.0f}", "compile": args.compile})


def main(argv=None) -> None:
    parser = bench.arguments(__doc__, ("fp32", "bf16", "fp8"))
    parser.add_argument("--model", choices=["full", "debug"], default=None, help="default: CPU both, GPU full")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: CPU 32 debug, 2 full; GPU 48)")
    parser.add_argument("--packing", type=int, choices=[1, 2, 3], default=2, help="sequences per row")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--fused-lamb", action="store_true", help="apex FusedLAMB (GPU)")
    parser.add_argument("--workers", type=int, default=2, help="loader workers")
    args, device = bench.parse(parser, argv)
    gpu, precision = device.type == "cuda", args.precision
    runs = [(args.model or "full", *GPU_RUN)] if gpu else [r for r in CPU_RUNS if args.model in (None, r[0])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_size, batch, warmup, steps in runs:
            rows.append(measure(args, model_size, args.batch or batch, precision,
                                args.warmup if args.warmup is not None else warmup,
                                args.steps if args.steps is not None else steps, Path(tmp), device))
            print(f"{model_size} batch {rows[-1].batch}: {rows[-1].alone.samples_per_s:.2f} sequences/s alone, "
                  f"{rows[-1].loaded.samples_per_s:.2f} with the loader", flush=True)
    notes = ["one process; full training steps (forward, MLM + NSP loss, backward, LAMB step), no evaluation.",
             "step alone: collated batches resident in device memory; with loader: packed HDF5 shards read, "
             "shuffled and collated by `bert.data.TrainStream` in DataLoader workers, then copied to the device.",
             "sequences/s counts real sequences (`seq_lens > 0`); tokens/s counts non-padding tokens.",
             "model TFLOP/s = 6 x parameters x tokens/s (dense-transformer estimate; BERT-large only).",
             f"anchor: NVIDIA v3.0, 1x DGX H100 (5.469 min): ~{NVIDIA_H100_SEQUENCES_PER_S} sequences/s per H100, "
             "packed, FP8, including evaluation (BERT-large only)."]
    text = bench.table(f"BERT phase-2 training throughput on {bench.device_name(device)}", bench.command("bert", argv),
                       notes, rows, "sequences")
    bench.write_table(text, "bert", device, args.out, rows, "sequences")


if __name__ == "__main__":
    main()
