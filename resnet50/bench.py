"""ResNet-50 training throughput (images/s) on the present device, data loading excluded.

Runs full training steps (forward, backward, LARS update) of the real model on
random tensors resident on the device, so the number is the model's compute
ceiling, not the input pipeline's. Prints a markdown table and writes it to
docs/perf/resnet50_<device>.md.

    python3 -m resnet50.bench                                  # CPU: 64 and 224 px
    python3 -m resnet50.bench --batch 400 --size 224 --precision bf16 --channels-last   # one H100
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import time
from pathlib import Path

import torch
import torch.nn as nn

from common.perf import device_name, write_table
from resnet50.model import build_resnet50
from resnet50.optim import LARS, lars_param_groups

# NVIDIA's v3.0 1x DGX H100 result (mlcommons/training_results_v3.0,
# NVIDIA/results/dgxh100_ngc23.04_mxnet/resnet/result_0.txt) logs
# tracked_stats throughput ~56,073 images/s on 8 GPUs: ~7,009 per H100.
NVIDIA_H100_IMAGES_PER_S = 7009


def measure(batch: int, size: int, precision: str, channels_last: bool, compile_model: bool,
            device: torch.device, warmup: int, steps: int) -> float:
    model = build_resnet50().to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    if compile_model:
        model = torch.compile(model)
    optimizer = LARS(lars_param_groups(model, 5e-5), lr=1.0, momentum=0.9, weight_decay=5e-5)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    def step():
        with autocast:
            loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # wall time must include the queued GPU work
    return batch * steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=None)
    parser.add_argument("--size", type=int, nargs="+", default=None)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    batches = args.batch or ([400] if gpu else [32])
    sizes = args.size or ([224] if gpu else [64, 224])
    warmup = args.warmup if args.warmup is not None else (20 if gpu else 2)
    steps = args.steps if args.steps is not None else (50 if gpu else 5)

    rows = []
    for size in sizes:
        for batch in batches:
            ips = measure(batch, size, args.precision, args.channels_last, args.compile, device,
                          warmup, steps)
            rows.append((size, batch, ips))
            print(f"size {size} batch {batch}: {ips:.1f} images/s", flush=True)

    name = device_name(device)
    lines = [
        f"# ResNet-50 v1.5 training throughput on {name}",
        "",
        f"Measured {datetime.date.today().isoformat()} with `python3 -m resnet50.bench` "
        f"(torch {torch.__version__}); {steps} timed steps after {warmup} warm-up steps; "
        f"precision {args.precision}, channels_last {args.channels_last}, compile {args.compile}; "
        "random device-resident inputs (no data loading).",
        "",
        "| crop (px) | batch | images/s | NVIDIA v3.0, per H100 (published log) |",
        "|---:|---:|---:|---:|",
    ]
    for size, batch, ips in rows:
        # the ratio only means something for a GPU at the real 224 px crop
        ratio = f" ({ips / NVIDIA_H100_IMAGES_PER_S:.2f}x)" if gpu and size == 224 else ""
        lines.append(f"| {size} | {batch} | {ips:,.1f}{ratio} | {NVIDIA_H100_IMAGES_PER_S:,} |")
    table = "\n".join(lines) + "\n"
    write_table(table, "resnet50", device, args.out)


if __name__ == "__main__":
    main()
