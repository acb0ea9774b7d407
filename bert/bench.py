"""BERT phase-2 training throughput (sequences/s) on the present device, data loading excluded.

Times full training steps of the real run (`bert.train.Trainer.train_step`: forward,
masked-LM + next-sentence loss, backward, LAMB step with the 1x DGX H100 config's
hyperparameters) on synthetic packed rows built once, before timing, in device memory,
so the number is the model's compute ceiling, not the input pipeline's. Each row holds
`--packing` sequences of random token ids filling ~95% of the 512 (tiny: 128) positions,
~15% of each sequence masked. Prints a markdown table and writes it to
docs/perf/bert_<device>.md.

    python3 -m bert.bench                                                        # CPU: tiny and BERT-large
    python3 -m bert.bench --model large --batch 48 --packing 2 --precision bf16  # one H100
    python3 -m bert.bench --model large --batch 48 --packing 2 --precision fp8   # one H100, Transformer Engine
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from bert import data
from bert.config import BertRunConfig
from bert.model import BertForPreTraining
from bert.train import Trainer, apply_fast_paths, model_config
from common import dist
from common.perf import device_name, write_table

# NVIDIA's v3.0 1x DGX H100 BERT result logs (mlcommons/training_results_v3.0, NVIDIA/results/):
# 5.469 min to train, packed, FP8, evaluation included: ~970 sequences/s per H100.
NVIDIA_H100_SEQUENCES_PER_S = 970
# LR and LAMB settings of config_DGXH100_1x8x48x1_pack.sh (they do not change the step's cost)
H100_HPARAMS = dict(lr=0.00096, beta1=0.60466, beta2=0.85437, weight_decay=0.1)
CPU_RUNS = [("tiny", 32, 3, 20), ("large", 2, 1, 3)]  # model, batch rows, warm-up steps, timed steps
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


def measure(model_size: str, batch: int, packing: int, precision: str, compile_model: bool, fused_lamb: bool,
            device: torch.device, warmup: int, steps: int) -> dict:
    cfg = BertRunConfig(batch_size=batch, max_samples=10**9, max_steps=10**6, packing_factor=packing,
                        model_size=model_size, precision=precision, fused_lamb=fused_lamb,
                        torch_compile=compile_model, device=device.type, **H100_HPARAMS)
    arch, max_pred = model_config(cfg)
    torch.manual_seed(0)
    model = BertForPreTraining(arch)
    params = sum(p.numel() for p in model.parameters())  # the tied embedding/decoder counted once
    model = apply_fast_paths(model, cfg, device)
    rng = np.random.default_rng(0)
    batches = [data.collate(packed_rows(rng, batch, packing, arch.max_positions, arch.vocab_size, max_pred),
                            arch.max_positions, max_pred) for _ in range(4)]
    timed = [batches[(warmup + i) % len(batches)] for i in range(steps)]  # the batches the timed steps get
    sequences = sum(int((b["seq_lens"] > 0).sum()) for b in timed)
    tokens = sum(int(b["seq_lens"].sum()) for b in timed)
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    trainer = Trainer(cfg, model, dist.read_dist_env({}), device, itertools.cycle(batches), [], 0, max_pred)
    for _ in range(warmup):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # wall time must include the queued GPU work
    elapsed = time.perf_counter() - start
    return {"model": model_size, "batch": batch, "packing": packing, "steps": steps, "warmup": warmup,
            "seq_s": sequences / elapsed, "tok_s": tokens / elapsed, "step_ms": 1000 * elapsed / steps,
            "tflops": 6 * params * tokens / elapsed / 1e12 if model_size == "large" else None, "params": params}


def table(results: list[dict], name: str, args, precision: str, gpu: bool) -> str:
    large = next((r for r in results if r["model"] == "large"), None)
    lines = [
        f"# BERT phase-2 training throughput on {name}", "",
        f"Measured {datetime.date.today().isoformat()} with `python3 -m bert.bench` (torch {torch.__version__}); "
        f"compile {args.compile}, fused LAMB {args.fused_lamb}. Full training steps "
        "(forward, MLM + NSP loss, backward, LAMB step) on synthetic packed rows built once in device memory "
        "before timing: pure compute, no data loading, no evaluation. Rows hold `packing` sequences filling "
        "~95% of max_positions (512; tiny: 128), ~15% of each masked.", "",
        "- sequences/s counts real sequences (`seq_lens > 0`); tokens/s counts non-padding tokens.",
        "- model TFLOP/s = 6 x parameters x tokens/s (dense-transformer estimate; BERT-large only"
        + (f", {large['params'] / 1e6:.1f}M parameters)." if large else ")."),
        f"- anchor: NVIDIA v3.0, 1x DGX H100 (5.469 min): ~{NVIDIA_H100_SEQUENCES_PER_S} sequences/s per H100, "
        "packed, FP8, including evaluation (BERT-large only).", "",
        "| model | precision | batch rows | packing | warm-up + timed steps | step (ms) | sequences/s | tokens/s "
        "| model TFLOP/s | NVIDIA v3.0 per H100 (seq/s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        # the ratio only means something for BERT-large on a GPU
        ratio = f" ({r['seq_s'] / NVIDIA_H100_SEQUENCES_PER_S:.2f}x)" if gpu and r["model"] == "large" else ""
        tflops = f"{r['tflops']:.2f}" if r["tflops"] is not None else "-"
        anchor = f"{NVIDIA_H100_SEQUENCES_PER_S}" if r["model"] == "large" else "-"
        lines.append(f"| {r['model']} | {precision} | {r['batch']} | {r['packing']} | {r['warmup']} + {r['steps']} "
                     f"| {r['step_ms']:,.1f} | {r['seq_s']:,.2f}{ratio} | {r['tok_s']:,.0f} | {tflops} | {anchor} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["large", "tiny"], default=None, help="default: CPU both, GPU large")
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: CPU 32 tiny, 2 large; GPU 48)")
    parser.add_argument("--packing", type=int, choices=[1, 2, 3], default=2, help="sequences per row")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp8"], default=None,
                        help="default: CPU fp32, GPU bf16")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--fused-lamb", action="store_true", help="apex FusedLAMB (GPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = dist.select_device(dist.read_dist_env({}), args.device)
    gpu = device.type == "cuda"
    precision = args.precision or ("bf16" if gpu else "fp32")
    runs = [(args.model or "large", *GPU_RUN)] if gpu else [r for r in CPU_RUNS if args.model in (None, r[0])]
    results = []
    for model_size, batch, warmup, steps in runs:
        r = measure(model_size, args.batch or batch, args.packing, precision, args.compile, args.fused_lamb,
                    device, args.warmup if args.warmup is not None else warmup,
                    args.steps if args.steps is not None else steps)
        results.append(r)
        print(f"{model_size} batch {r['batch']}x{args.packing}: {r['seq_s']:.2f} sequences/s, "
              f"{r['step_ms']:.1f} ms/step", flush=True)

    name = device_name(device)
    text = table(results, name, args, precision, gpu)
    write_table(text, "bert", device, args.out)


if __name__ == "__main__":
    main()
