"""ResNet-50 training throughput (images/s): the step alone, and with the real input pipeline.

Times the real training step (`resnet50.train`'s model, parallelize order, LARS,
`common.step.TrainStep`) twice (`common.bench`): on a few batches resident in
device memory — the model's ceiling — and fed by the real loader: JPEG files in
the ImageNet folder layout, decoded with PIL, random-resized-cropped and
flipped in DATALOADER workers, then copied to the device. The files are
written first (synthetic classes at ImageNet's typical 375-500 px sides).
Prints a markdown table and writes it to docs/perf/resnet50_<device>.md.

    python3 -m resnet50.bench                          # CPU: 64 and 224 px, batch 32
    python3 -m resnet50.bench --batch 400 --size 224 --precision bf16 --channels-last   # one H100
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from common import bench, loader
from common.precision import Precision
from resnet50 import data
from resnet50.config import ResNetConfig
from resnet50.model import build_resnet50
from resnet50.synthetic import SyntheticSpec, write_synthetic
from resnet50.train import build_step, parallelize

# NVIDIA's v3.0 1x DGX H100 result (mlcommons/training_results_v3.0,
# NVIDIA/results/dgxh100_ngc23.04_mxnet/resnet/result_0.txt) logs
# tracked_stats throughput ~56,073 images/s on 8 GPUs: ~7,009 per H100.
NVIDIA_H100_IMAGES_PER_S = 7009
# config_DGXH100_1x8x400x1.sh's hyperparameters (they do not change the step's cost)
H100_CONFIG = ResNetConfig(batch_size=400, lr=11.0, warmup_epochs=2, num_epochs=37, eval_offset=2, weight_decay=5e-5,
                           momentum=0.9)
TRAIN_GFLOP_PER_IMAGE = 24.5  # forward + backward at 224 px (FACTS.md §5); scales with the pixel count


def measure(args, size: int, batch: int, files: Path, device: torch.device) -> bench.Row:
    precision = Precision(args.precision, device.type)
    model = parallelize(build_resnet50(), device=device, world_size=1, precision=precision,
                        channels_last=args.channels_last, torch_compile=args.compile)
    step = build_step(model, H100_CONFIG, precision, device, steps_per_epoch=1000)
    transfer = lambda b: data.to_device(b, device, args.channels_last)  # noqa: E731
    resident = [transfer((torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,)))) for _ in range(2)]
    train_loader = data.build_loaders(files, image_size=size, batch_size=batch, eval_batch_size=batch,
                                      num_workers=args.workers, rank=0, world_size=1, seed=0,
                                      pin_memory=device.type == "cuda")[0]
    batches = loader.on_device(loader.epochs(train_loader), transfer)
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=args.warmup, steps=args.steps,
                                                     device=device)
    return bench.Row(f"ResNet-50, {size} px", str(batch), args.precision + (", NHWC" if args.channels_last else ""),
                     alone, loaded, TRAIN_GFLOP_PER_IMAGE * 1e9 * (size / 224) ** 2,
                     f"{NVIDIA_H100_IMAGES_PER_S:,}" if size == 224 else "-",
                     {"compile": args.compile, "loader workers": args.workers})


def main(argv=None) -> None:
    parser = bench.arguments(__doc__)
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="default: GPU 400, CPU 32")
    parser.add_argument("--size", type=int, nargs="+", default=None, help="crop side (default: GPU 224, CPU 64 224)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: GPU 8, CPU 2)")
    args, device = bench.parse(parser, argv, warmup=(20, 2), steps=(50, 5))
    gpu = device.type == "cuda"
    batches, sizes = args.batch or ([400] if gpu else [32]), args.size or ([224] if gpu else [64, 224])
    args.workers = args.workers if args.workers is not None else (8 if gpu else 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # enough JPEGs for two batches per class folder pass; the loader cycles through them epoch after epoch
        per_class = max(2 * max(batches) // 10, 2)
        write_synthetic(Path(tmp), SyntheticSpec(train_per_class=per_class, val_per_class=1, min_size=375,
                                                 max_size=500))
        for size in sizes:
            for batch in batches:
                rows.append(measure(args, size, batch, Path(tmp), device))
                print(f"size {size} batch {batch}: {rows[-1].alone.samples_per_s:.1f} images/s alone, "
                      f"{rows[-1].loaded.samples_per_s:.1f} with the loader", flush=True)
    notes = [f"{args.steps} timed steps after {args.warmup} warm-up steps, one process: forward, label-smoothed "
             "cross entropy, backward, LARS update.",
             "step alone: random images resident in device memory; with loader: JPEGs (375-500 px) decoded, "
             "random-resized-cropped and flipped by the real DataLoader, then copied to the device.",
             f"model TFLOP/s: {TRAIN_GFLOP_PER_IMAGE} GFLOP per 224 px training image, scaled by the pixel count.",
             "anchor: NVIDIA v3.0, 1x DGX H100 (MXNet + DALI), ~7,009 images/s per H100 at 224 px."]
    text = bench.table(f"ResNet-50 v1.5 training throughput on {bench.device_name(device)}",
                       bench.command("resnet50", argv), notes, rows, "images")
    bench.write_table(text, "resnet50", device, args.out, rows, "images")


if __name__ == "__main__":
    main()
