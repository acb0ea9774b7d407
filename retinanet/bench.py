"""RetinaNet training throughput (images/s): the step alone, and with the real input pipeline.

Times the real training step (`retinanet.train`'s parallelize order and `build_step`:
resize to S x S and normalise inside the model, ResNeXt50-32x4d FPN, focal + L1 loss,
backward, Adam) through `common.bench`, twice: on batches resident in device memory —
the model's ceiling — and fed by the real loader: JPEGs in the OpenImages MLPerf layout
(written first at OpenImages' typical 700-1024 px sides), decoded with PIL and flipped
in DataLoader workers, then copied to the device. Prints a markdown table and writes it
to docs/perf/retinanet_<device>.md.

    python3 -m retinanet.bench                                    # CPU: debug at 128 px, full at 256 px
    python3 -m retinanet.bench --model full --batch 32 --size 800  # one H100 (bf16 by default on a GPU)
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from common import bench, loader
from common.precision import Precision
from retinanet import data
from retinanet.config import RULES, RetinaNetConfig
from retinanet.model import RetinaNetShape, build_retinanet
from retinanet.synthetic import SyntheticSpec, write_images
from retinanet.train import build_step, parallelize

# NVIDIA's v3.0 1x DGX H100 result (FACTS.md §5): 37.0 min to 0.34 mAP, ~277 images/s per H100 at 800 x 800.
NVIDIA_H100_IMAGES_PER_S = 277
TRAIN_TFLOP_PER_IMAGE = 1.2  # forward + backward at 800 x 800 (FACTS.md §5); scales with the pixel count
CPU_RUNS = [("debug", 8, 128), ("full", 2, 256)]  # model, batch, image side


def measure(args, model_size: str, batch: int, size: int, files: Path, device: torch.device) -> bench.Row:
    precision = Precision(args.precision, device.type)
    cfg = RetinaNetConfig(batch_size=batch, lr=1e-4, num_epochs=1, warmup_epochs=0, image_size=size)
    torch.manual_seed(0)
    model = build_retinanet(RetinaNetShape.debug() if model_size == "debug" else RetinaNetShape(), size)
    model = parallelize(model, device=device, world_size=1, precision=precision, torch_compile=args.compile)
    step = build_step(model, cfg, precision, device, steps_per_epoch=1000)
    train_loader = data.build_loaders(files, num_classes=RULES.num_classes, batch_size=batch, eval_batch_size=batch,
                                      num_workers=args.workers, rank=0, world_size=1, seed=0,
                                      pin_memory=device.type == "cuda")[0]
    first = iter(train_loader)
    resident = [data.to_device(next(first), device) for _ in range(2)]
    batches = loader.on_device(loader.epochs(train_loader), lambda b: data.to_device(b, device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=args.warmup, steps=args.steps,
                                                     device=device)
    full = model_size == "full"
    return bench.Row("RetinaNet ResNeXt50-32x4d FPN" if full else "debug (ResNet-18 FPN)", f"{batch} at {size} px",
                     args.precision, alone, loaded, TRAIN_TFLOP_PER_IMAGE * 1e12 * (size / 800) ** 2 if full else None,
                     str(NVIDIA_H100_IMAGES_PER_S) if full and size == 800 else "-",
                     {"compile": args.compile, "loader workers": args.workers})


def main(argv=None) -> None:
    parser = bench.arguments(__doc__)
    parser.add_argument("--model", choices=["full", "debug"], default=None, help="default: CPU both, GPU full")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: GPU 32; CPU 8 and 2)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: GPU 800; CPU 128 and 256)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: GPU 12, CPU 2)")
    args, device = bench.parse(parser, argv, warmup=(10, 1), steps=(30, 3))
    gpu = device.type == "cuda"
    args.workers = args.workers if args.workers is not None else (12 if gpu else 2)
    runs = [(args.model or "full", 32, 800)] if gpu else [r for r in CPU_RUNS if args.model in (None, r[0])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_size, batch, size in runs:
            batch, size = args.batch or batch, args.size or size
            files = Path(tmp) / f"{model_size}_{batch}"
            spec = SyntheticSpec(min_side=700, max_side=1024)  # the real loader's input: OpenImages-sized JPEGs
            write_images(files, "train", 2 * batch, np.random.default_rng(0), spec)
            write_images(files, "validation", 1, np.random.default_rng(1), spec)
            rows.append(measure(args, model_size, batch, size, files, device))
            print(f"{model_size} batch {batch} at {size} px: {rows[-1].alone.samples_per_s:.2f} images/s alone, "
                  f"{rows[-1].loaded.samples_per_s:.2f} with the loader", flush=True)
    notes = [f"{args.steps} timed steps after {args.warmup} warm-up steps, one process: resize and normalise (in the "
             "model), forward, focal + L1 loss, backward, Adam; no evaluation.",
             "step alone: decoded images resident in device memory; with loader: 700-1024 px JPEGs decoded and "
             "flipped by the real DataLoader, then copied to the device.",
             f"model TFLOP/s: {TRAIN_TFLOP_PER_IMAGE} TFLOP per 800 x 800 training image (FACTS.md §5), scaled by the "
             "pixel count (full model only).",
             f"anchor: NVIDIA v3.0, 1x DGX H100 (37.0 min, DALI, CUDA graphs): ~{NVIDIA_H100_IMAGES_PER_S} images/s "
             "per H100 at 800 x 800."]
    text = bench.table(f"RetinaNet training throughput on {bench.device_name(device)}",
                       bench.command("retinanet", argv), notes, rows, "images")
    bench.write_table(text, "retinanet", device, args.out, rows, "images")


if __name__ == "__main__":
    main()
