"""3D U-Net training throughput (samples/s): the step alone, and with the real input pipeline.

Times the real training step (`unet3d.train`'s parallelize order and `build_step`: forward,
Dice + cross-entropy, backward, SGD with Nesterov momentum) through `common.bench`, twice:
on patches resident in device memory — the model's ceiling — and fed by the real loader:
memory-mapped `case_XXXXX_{x,y}.npy` volumes (written first, 1.25x the patch a side),
foreground-oversampled crops and the reference's augmentations in DataLoader workers, then
the copy to the device. Prints a markdown table and writes it to docs/perf/unet3d_<device>.md.

    python3 -m unet3d.bench                                   # CPU: debug at 32^3, full at 64^3
    python3 -m unet3d.bench --model full --batch 7 --size 128  # one H100 (bf16 by default on a GPU)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import bench, loader
from common.precision import Precision
from unet3d import data
from unet3d.config import RULES, UNet3DConfig
from unet3d.model import UNetShape, build_unet3d
from unet3d.synthetic import SyntheticSpec, draw_case
from unet3d.train import build_step, parallelize

# NVIDIA's v3.0 1x DGX H100 result (FACTS.md §5): 12.1 min to Dice 0.908, ~70.8 samples/s per H100 at 128^3.
NVIDIA_H100_SAMPLES_PER_S = 70.8
TRAIN_TFLOP_PER_SAMPLE = 2.86  # forward + backward of one 128^3 patch (FACTS.md §5); scales with the voxels
CPU_RUNS = [("debug", 4, 32), ("full", 1, 64)]  # model, batch, patch side


def write_volumes(root: Path, count: int, side: int) -> list[data.Case]:
    rng = np.random.default_rng(0)
    spec = SyntheticSpec(min_side=side, max_side=side)
    for case_id in range(count):
        data.write_case(root, case_id, *draw_case(rng, spec))
    return [data.read_case(root, case_id, side) for case_id in range(count)]


def measure(args, model_size: str, batch: int, size: int, cases: list[data.Case], device: torch.device) -> bench.Row:
    precision = Precision(args.precision, device.type)
    cfg = UNet3DConfig(batch_size=batch, lr=1.0, warmup_epochs=0, max_epochs=1, input_shape=size)
    torch.manual_seed(0)
    model = build_unet3d(UNetShape.debug() if model_size == "debug" else UNetShape())
    model = parallelize(model, device=device, world_size=1, precision=precision, torch_compile=args.compile)
    step = build_step(model, cfg, precision, device, steps_per_epoch=1000)
    patches = data.TrainPatches(cases, size, RULES.oversampling, seed=0)
    sampler = data.EpochSampler(patches, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True)
    train_loader = DataLoader(patches, batch_size=batch, sampler=sampler, drop_last=True, num_workers=args.workers,
                              pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    first = iter(train_loader)
    resident = [data.to_device(next(first), device) for _ in range(2)]
    batches = loader.on_device(loader.epochs(train_loader), lambda b: data.to_device(b, device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=args.warmup, steps=args.steps,
                                                     device=device)
    full = model_size == "full"
    return bench.Row("3D U-Net (32-320 filters)" if full else "debug (8-32 filters, 3 stages)",
                     f"{batch} at {size}^3", args.precision, alone, loaded,
                     TRAIN_TFLOP_PER_SAMPLE * 1e12 * (size / 128) ** 3 if full else None,
                     str(NVIDIA_H100_SAMPLES_PER_S) if full and size == 128 else "-",
                     {"compile": args.compile, "loader workers": args.workers})


def main(argv=None) -> None:
    parser = bench.arguments(__doc__)
    parser.add_argument("--model", choices=["full", "debug"], default=None, help="default: CPU both, GPU full")
    parser.add_argument("--batch", type=int, default=None, help="patches per step (default: GPU 7; CPU 4 and 1)")
    parser.add_argument("--size", type=int, default=None, help="patch side (default: GPU 128; CPU 32 and 64)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: GPU 4, CPU 1)")
    args, device = bench.parse(parser, argv, warmup=(10, 1), steps=(30, 4))
    gpu = device.type == "cuda"
    args.workers = args.workers if args.workers is not None else (4 if gpu else 1)
    runs = [(args.model or "full", 7, 128)] if gpu else [r for r in CPU_RUNS if args.model in (None, r[0])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_size, batch, size in runs:
            batch, size = args.batch or batch, args.size or size
            cases = write_volumes(Path(tmp) / f"{model_size}_{size}", 2 * batch, size * 5 // 4)
            rows.append(measure(args, model_size, batch, size, cases, device))
            print(f"{model_size} batch {batch} at {size}^3: {rows[-1].alone.samples_per_s:.2f} samples/s alone, "
                  f"{rows[-1].loaded.samples_per_s:.2f} with the loader", flush=True)
    notes = [f"{args.steps} timed steps after {args.warmup} warm-up steps, one process: forward, Dice + "
             "cross-entropy, backward, SGD with Nesterov momentum; no evaluation.",
             "step alone: patches resident in device memory; with loader: memory-mapped .npy volumes 1.25x the "
             "patch a side, cropped (foreground oversampling 0.4) and augmented by the real DataLoader, then copied.",
             f"model TFLOP/s: {TRAIN_TFLOP_PER_SAMPLE} TFLOP per 128^3 training patch (FACTS.md §5), scaled by the "
             "voxel count (full model only).",
             "anchor: NVIDIA v3.0, 1x DGX H100 (12.1 min, MXNet, fp16, DALI, CUDA graphs): "
             f"~{NVIDIA_H100_SAMPLES_PER_S} samples/s per H100 at 128^3."]
    text = bench.table(f"3D U-Net training throughput on {bench.device_name(device)}", bench.command("unet3d", argv),
                       notes, rows, "samples")
    bench.write_table(text, "unet3d", device, args.out, rows, "samples")


if __name__ == "__main__":
    main()
