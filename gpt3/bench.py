"""GPT-3 training throughput (tokens/s, model TFLOP/s) of a GPT-3-shaped slice on one device.

A slice is the real model code (`gpt3.model.GPT`) at GPT-3's width — hidden
12288, 96 heads, FFN 49152, sequence 2048, the 51,200-row padded vocabulary
with its tied output layer — cut to as many layers as fit the device's memory
(`--layers auto`: 16 bytes of weight, gradient and Adam state per parameter
plus activations; or give `--layers`). It times full training steps of the
real run (`gpt3.train.Trainer.train_step`: micro-batches, forward,
cross-entropy, backward, clipping, AdamW — fused on a GPU) on random token
ids held in device memory: a pure compute number, no data loading, no
evaluation.

model FLOPs per token = 6 x (parameters without the position embeddings)
+ 12 x layers x sequence x hidden (attention scores and values, causal
masking not discounted) — the usual model-FLOPs count, under which NVIDIA's
v3.0 result (~678 tokens/s per H100 for the full 175B model) is ~729 model
TFLOP/s per GPU. The table also shows what the full model's tokens/s per GPU
would be at the slice's TFLOP/s, if pipeline bubbles and communication cost
nothing (they do not).

    python3 -m gpt3.bench                                   # CPU: a narrow slice (GPT-3 does not fit 24 GiB)
    python3 -m gpt3.bench --precision bf16                  # one GPU: full width, auto layers
    python3 -m gpt3.bench --precision fp8                   # one GPU, Transformer Engine FP8 linears
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import torch

from common import dist
from common.perf import device_name, write_table
from gpt3.config import GPTRunConfig
from gpt3.model import GPT, GPTConfig
from gpt3.parallelize import build_mesh
from gpt3.train import Trainer, build_model, build_optimizer

FULL = GPTConfig()
# NVIDIA v3.0, GPT-3 175B (mlcommons/training_results_v3.0, NVIDIA/results/): ~678 tokens/s per H100
NVIDIA_H100_TOKENS_PER_S = 678
CPU_SLICE = dict(hidden=512, layers=2)  # GPT-3's shape (head size 128, FFN 4 x hidden) at 1/24 width


def flops_per_token(arch: GPTConfig) -> float:
    params = count_parameters(arch) - arch.seq_len * arch.hidden  # position embeddings do no matmul
    return 6 * params + 12 * arch.layers * arch.seq_len * arch.hidden


def count_parameters(arch: GPTConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(arch).parameters())


def auto_layers(arch: GPTConfig, micro_batch: int, device: torch.device) -> int:
    """As many layers as fit: 16 bytes per parameter (fp32 weight, gradient, two Adam moments) plus
    ~70 bytes per (token x hidden) of activations per layer, 10% of free memory kept spare."""
    free, _ = torch.cuda.mem_get_info(device)
    one = dataclasses.replace(arch, layers=1)
    fixed = 16 * (count_parameters(one) - 12 * arch.hidden ** 2 - 13 * arch.hidden)  # embeddings, final norm
    fixed += 10 * micro_batch * arch.seq_len * arch.vocab_size  # logits: bf16, fp32, their gradient
    per_layer = 16 * (12 * arch.hidden ** 2 + 13 * arch.hidden) + 70 * micro_batch * arch.seq_len * arch.hidden
    return max(1, int((0.9 * free - fixed) // per_layer))


class RandomTokens:
    """Stands in for gpt3.train.TrainSamples: random token ids built once in device memory."""

    def __init__(self, arch: GPTConfig, rows: int, device: torch.device):
        generator = torch.Generator().manual_seed(0)
        self.pool = torch.randint(0, 50257, (rows, arch.seq_len + 1), generator=generator).to(device)

    def batch(self, ids: range) -> torch.Tensor:
        return self.pool[[i % len(self.pool) for i in ids]]


def measure(arch: GPTConfig, minibs: int, micro: int, precision: str, device: torch.device, warmup: int,
            steps: int) -> dict:
    cfg = GPTRunConfig(minibs=minibs, micro_batch_size=micro, precision=precision, device=device.type)
    mesh = build_mesh(device, 1)
    stages = build_model(arch, cfg, mesh, device)
    model = stages[0][1]
    torch.manual_seed(0)
    model.init_weights()
    optimizer = build_optimizer([model], device)
    trainer = Trainer(cfg, arch, stages, optimizer, mesh, device, RandomTokens(arch, 2 * minibs, device), [], 0)
    for _ in range(warmup):
        trainer.train_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    losses = [trainer.train_step() for _ in range(steps)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # wall time must include the queued GPU work
    elapsed = time.perf_counter() - start
    if not all(torch.isfinite(loss) for loss in losses):
        raise RuntimeError("non-finite loss while timing")
    tokens = steps * minibs * arch.seq_len
    tflops = flops_per_token(arch) * tokens / elapsed / 1e12
    return {"arch": arch, "minibs": minibs, "micro": micro, "precision": precision, "warmup": warmup,
            "steps": steps, "step_s": elapsed / steps, "tok_s": tokens / elapsed, "tflops": tflops,
            "params": count_parameters(arch), "full_tok_s": tflops * 1e12 / flops_per_token(FULL),
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def table(r: dict, device: torch.device) -> str:
    a, gpu = r["arch"], device.type == "cuda"
    ratio = f" ({r['full_tok_s'] / NVIDIA_H100_TOKENS_PER_S:.2f}x)" if gpu and a.hidden == FULL.hidden else ""
    peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
    lines = [
        f"# GPT-3 training throughput on {device_name(device)}", "",
        f"Measured {datetime.date.today().isoformat()} with `python3 -m gpt3.bench` (torch {torch.__version__}): "
        "full training steps of `gpt3.train.Trainer` (forward, cross-entropy, backward, clipping, AdamW) on "
        "random tokens held in device memory — pure compute, no data loading, no evaluation, one device.", "",
        f"- slice: {a.layers} layers, hidden {a.hidden}, {a.heads} heads, FFN {a.ffn}, sequence {a.seq_len}, "
        f"vocabulary {a.vocab_size} (tied output layer): {r['params'] / 1e9:.3f}B parameters"
        + ("" if a.hidden == FULL.hidden else f" — narrower than GPT-3 (hidden {FULL.hidden}), which does not "
           "fit this machine") + ".",
        "- model FLOPs per token = 6 x parameters (without position embeddings) + 12 x layers x sequence x hidden.",
        f"- full-model tokens/s = the slice's TFLOP/s / {flops_per_token(FULL) / 1e12:.3f} TFLOP per token of "
        "GPT-3 175B: an upper bound (no pipeline bubble, no communication).",
        f"- anchor: NVIDIA v3.0 GPT-3 175B, ~{NVIDIA_H100_TOKENS_PER_S} tokens/s per H100 (~729 model TFLOP/s "
        "per GPU), FP8, TP 4 x PP 8, on 512-3,584 GPUs.", "",
        "| precision | sequences/step (micro-batch) | warm-up + timed steps | step (s) | tokens/s | model TFLOP/s "
        "| full-model tokens/s at that rate | peak memory (GiB) | NVIDIA v3.0 per H100 (tokens/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['precision']} | {r['minibs']} ({r['micro']}) | {r['warmup']} + {r['steps']} | {r['step_s']:,.3f} "
        f"| {r['tok_s']:,.0f} | {r['tflops']:,.3f} | {r['full_tok_s']:,.2f}{ratio} "
        f"| {peak} "
        f"| {NVIDIA_H100_TOKENS_PER_S} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="auto", help="layers of the slice, or auto (GPU: as many as fit)")
    parser.add_argument("--hidden", type=int, default=None, help="default: GPU 12288, CPU 512 (heads = hidden / 128, FFN = 4 x hidden, as GPT-3)")
    parser.add_argument("--minibs", type=int, default=None, help="sequences per step (default: GPU 4, CPU 1)")
    parser.add_argument("--micro-batch", type=int, default=1)
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp8"], default=None, help="default: GPU bf16, CPU fp32")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = dist.select_device(dist.read_dist_env({}), args.device)
    gpu = device.type == "cuda"
    hidden = args.hidden or (FULL.hidden if gpu else CPU_SLICE["hidden"])
    arch = dataclasses.replace(FULL, hidden=hidden, heads=hidden // 128, ffn=4 * hidden, layers=1)
    minibs = args.minibs or (4 if gpu else 1)
    if args.layers == "auto":
        layers = auto_layers(arch, args.micro_batch, device) if gpu else CPU_SLICE["layers"]
    else:
        layers = int(args.layers)
    arch = dataclasses.replace(arch, layers=layers)
    warmup = args.warmup if args.warmup is not None else (3 if gpu else 1)
    steps = args.steps if args.steps is not None else (10 if gpu else 3)
    precision = args.precision or ("bf16" if gpu else "fp32")
    r = measure(arch, minibs, args.micro_batch, precision, device, warmup, steps)
    text = table(r, device)
    write_table(text, "gpt3", device, args.out)


if __name__ == "__main__":
    main()
