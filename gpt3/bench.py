"""GPT-3 training throughput (tokens/s, model TFLOP/s) of a GPT-3-shaped slice on one device.

A slice is the real model code (`gpt3.model.GPT`) at GPT-3's width — hidden
12288, 96 heads, FFN 49152, sequence 2048, the 51,200-row padded vocabulary
with its tied output layer — cut to as many layers as fit the device's memory
(`--layers auto`: 16 bytes of weight, gradient and Adam state per parameter
plus activations; or give `--layers`). It times the real training step
(`gpt3.parallelize.build_stages`, `gpt3.train.build_step`: micro-batches,
forward, cross-entropy, backward, clipping, AdamW — fused on a GPU) through
`common.bench`, twice: on random token ids held in device memory — a pure
compute number — and fed by the real input pipeline: two Megatron
`.bin`/`.idx` files of random tokens (written first with
`gpt3.data.write_indexed`), blended 0.5/0.5 into shuffled GPT samples by
`gpt3.data.TrainSamples` and copied to the device. No evaluation.

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

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import bench, loader
from common.precision import Precision
from gpt3 import data
from gpt3.config import GPTRunConfig
from gpt3.model import GPT, GPTConfig, LMLoss
from gpt3.optim import build_optimizer
from gpt3.parallelize import RankModel, build_mesh, build_stages
from gpt3.train import build_step

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


def measure(arch: GPTConfig, minibs: int, micro: int, precision: str, device: torch.device, warmup: int,
            steps: int, files: Path) -> bench.Row:
    cfg = GPTRunConfig(minibs=minibs, micro_batch_size=micro)
    prec = Precision(precision, device.type)
    mesh = build_mesh(device, 1)
    stages = build_stages(arch, mesh, device, pipeline_parallel=1, interleaved=1, precision=prec, torch_compile=False)
    torch.manual_seed(0)
    stages[0][1].init_weights()
    optimizer = build_optimizer([m for _, m in stages], device)
    loss = LMLoss()
    step = build_step(RankModel.build(stages, mesh, device, 1, cfg.accumulation_steps(), loss), optimizer, cfg, prec,
                      device, loss, count=len)  # the table counts sequences
    generator = torch.Generator().manual_seed(0)
    resident = torch.randint(0, 50257, (2 * minibs, arch.seq_len + 1), generator=generator).to(device)
    rng = np.random.default_rng(0)  # the real input: Megatron files of ~2k-token documents, blended and shuffled
    for name in data.TRAIN_FILES:
        data.write_indexed(files / name, [rng.integers(0, 50257, 2048) for _ in range(4 * minibs)], np.uint16)
    samples = data.TrainSamples([data.IndexedDataset(files / name) for name in data.TRAIN_FILES],
                                (warmup + steps + 1) * minibs, arch.seq_len, seed=0)
    batches = loader.on_device(data.train_batches(samples, minibs, minibs, 0, micro),
                               lambda tokens: tokens.long().to(device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident.split(micro), batches, warmup=warmup, steps=steps,
                                                     device=device)
    tflops = flops_per_token(arch) * arch.seq_len * alone.samples_per_s / 1e12
    gpu, full_width = device.type == "cuda", arch.hidden == FULL.hidden
    full_tok_s = tflops * 1e12 / flops_per_token(FULL)
    ratio = f" ({full_tok_s / NVIDIA_H100_TOKENS_PER_S:.2f}x)" if gpu and full_width else ""
    return bench.Row(f"{arch.layers} layers, hidden {arch.hidden}", f"{minibs} ({micro})", precision, alone, loaded,
                     flops_per_token(arch) * arch.seq_len,
                     f"{NVIDIA_H100_TOKENS_PER_S / FULL.seq_len:.3f} ({NVIDIA_H100_TOKENS_PER_S} tokens/s)",
                     {"tokens/s": f"{alone.samples_per_s * arch.seq_len:,.0f}",
                      "full-model tokens/s at that rate": f"{full_tok_s:,.2f}{ratio}",
                      "peak memory (GiB)": f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}" if gpu else "-",
                      "parameters": f"{count_parameters(arch) / 1e9:.3f}B"},
                     anchor_scale=flops_per_token(arch) / flops_per_token(FULL))


def main(argv=None) -> None:
    parser = bench.arguments(__doc__, ("fp32", "bf16", "fp8"))
    parser.add_argument("--layers", default="auto", help="layers of the slice, or auto (GPU: as many as fit)")
    parser.add_argument("--hidden", type=int, default=None,
                        help="default: GPU 12288, CPU 512 (heads = hidden / 128, FFN = 4 x hidden, as GPT-3)")
    parser.add_argument("--minibs", type=int, default=None, help="sequences per step (default: GPU 4, CPU 1)")
    parser.add_argument("--micro-batch", type=int, default=1)
    args, device = bench.parse(parser, argv, warmup=(3, 1), steps=(10, 3))
    gpu = device.type == "cuda"
    hidden = args.hidden or (FULL.hidden if gpu else CPU_SLICE["hidden"])
    arch = dataclasses.replace(FULL, hidden=hidden, heads=hidden // 128, ffn=4 * hidden, layers=1)
    minibs = args.minibs or (4 if gpu else 1)
    if args.layers == "auto":
        layers = auto_layers(arch, args.micro_batch, device) if gpu else CPU_SLICE["layers"]
    else:
        layers = int(args.layers)
    arch = dataclasses.replace(arch, layers=layers)
    warmup, steps, precision = args.warmup, args.steps, args.precision
    with tempfile.TemporaryDirectory() as tmp:
        row = measure(arch, minibs, args.micro_batch, precision, device, warmup, steps, Path(tmp))
    notes = [f"{steps} timed steps after {warmup} warm-up steps, one device: forward, cross-entropy, backward, "
             "clipping, AdamW; samples are 2048-token sequences.",
             f"slice: {arch.layers} layers, hidden {arch.hidden}, {arch.heads} heads, FFN {arch.ffn}, sequence "
             f"{arch.seq_len}, vocabulary {arch.vocab_size} (tied output layer)"
             + ("" if arch.hidden == FULL.hidden else f" — narrower than GPT-3 (hidden {FULL.hidden}), which does "
                "not fit this machine") + ".",
             "step alone: random tokens in device memory; with loader: blended, shuffled GPT samples read from "
             "Megatron .bin/.idx files, then copied to the device.",
             "model FLOPs per token = 6 x parameters (without position embeddings) + 12 x layers x sequence x hidden.",
             f"full-model tokens/s = the slice's TFLOP/s / {flops_per_token(FULL) / 1e12:.3f} TFLOP per token of "
             "GPT-3 175B: an upper bound (no pipeline bubble, no communication).",
             f"anchor: NVIDIA v3.0 GPT-3 175B, ~{NVIDIA_H100_TOKENS_PER_S} tokens/s per H100 (~729 model TFLOP/s "
             "per GPU), FP8, TP 4 x PP 8, on 512-3,584 GPUs."]
    text = bench.table(f"GPT-3 training throughput on {bench.device_name(device)}", bench.command("gpt3", argv),
                       notes, [row], "sequences")
    bench.write_table(text, "gpt3", device, args.out, [row], "sequences")


if __name__ == "__main__":
    main()
