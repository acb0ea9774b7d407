"""Mask R-CNN training throughput (images/s): the step alone, and with the real input pipeline; and the gather.

Times the real training step (`maskrcnn.train`'s parallelize order and `build_step`: resize
(shorter side S, longer at most 1333/800 x S) and normalise inside the model, pad to 32,
ResNet-50 FPN, RPN, box and mask heads, their five losses, backward, SGD) through
`common.bench`, twice: on batches resident in device memory — the model's ceiling — and fed
by the real loader: JPEGs and polygon annotations in the COCO 2017 layout (written first at
COCO's typical 480-640 px sides), decoded with PIL, masks rasterised by pycocotools and
flipped in DataLoader workers, then copied to the device. Prints a markdown table and writes
it to docs/perf/maskrcnn_<device>.md.

    python3 -m maskrcnn.bench                                  # CPU: debug at 96 px, full at 320 px
    python3 -m maskrcnn.bench --model full --batch 12 --size 800  # one H100 (bf16 by default on a GPU)
    python3 -m maskrcnn.bench --gather                         # pickled-dict vs JSON-string results, 1 process

`--gather` times what evaluation ships to rank 0 for val2017 (5,000 images x 100 detections with
an RLE mask each): pickling the result dicts (what `gather_object` of the list does on every rank,
and unpickling on rank 0; `common.detection.gather_on_rank0`) against NVIDIA's way, `json.dumps` of
them plus one `json.loads` of the joined string, and the bytes each sends. Writes
docs/perf/maskrcnn_gather.md.
"""
from __future__ import annotations

import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import bench, loader
from common.precision import Precision
from maskrcnn import data
from maskrcnn.config import RULES, MaskRCNNConfig
from maskrcnn.model import MaskRCNNShape, build_maskrcnn
from maskrcnn.synthetic import SyntheticSpec, write_images
from maskrcnn.train import build_step, parallelize

# NVIDIA's v3.0 1x DGX H100 result (FACTS.md §5): 19.2 min to 0.377/0.339, ~180 images/s per H100 (800/1333).
NVIDIA_H100_IMAGES_PER_S = 180
CPU_RUNS = [("debug", 4, 96), ("full", 2, 320)]  # model, batch, shorter side


def measure(args, model_size: str, batch: int, size: int, files: Path, device: torch.device) -> bench.Row:
    precision = Precision(args.precision, device.type)
    max_size = size * RULES.max_size // RULES.min_size
    cfg = MaskRCNNConfig(batch_size=batch, base_lr=0.001, warmup_iters=0, warmup_factor=1e-5, steps="1000,2000",
                         num_epochs=1, num_image_candidates=1000 * batch, min_size=size, max_size=max_size)
    torch.manual_seed(0)
    model = build_maskrcnn(MaskRCNNShape.debug() if model_size == "debug" else MaskRCNNShape(), min_size=size,
                           max_size=max_size, num_image_candidates=cfg.num_image_candidates,
                           candidates_per_image=False, roi_align=args.roi_align)
    model = parallelize(model, device=device, world_size=1, precision=precision, torch_compile=args.compile)
    step = build_step(model, cfg, precision, device)
    train_loader = data.build_loaders(files, num_classes=RULES.num_classes, batch_size=batch, eval_batch_size=batch,
                                      num_workers=args.workers, rank=0, world_size=1, seed=0,
                                      pin_memory=device.type == "cuda")[0]
    first = iter(train_loader)
    resident = [data.to_device(next(first), device) for _ in range(2)]
    batches = loader.on_device(loader.epochs(train_loader), lambda b: data.to_device(b, device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=args.warmup, steps=args.steps,
                                                     device=device)
    full = model_size == "full"
    return bench.Row("Mask R-CNN R50-FPN" if full else "debug (ResNet-18 FPN)", f"{batch} at {size}/{max_size} px",
                     args.precision, alone, loaded, None,
                     str(NVIDIA_H100_IMAGES_PER_S) if full and size == RULES.min_size else "-",
                     {"compile": args.compile, "loader workers": args.workers, "RoIAlign": args.roi_align})


def fake_results(images: int, per_image: int, rng: np.random.Generator) -> list[dict]:
    """COCO results shaped like val2017 inference: a box and a compressed-RLE mask string per detection."""
    results = []
    for image_id in range(images):
        for _ in range(per_image):
            counts = "".join(chr(48 + int(v)) for v in rng.integers(0, 75, int(rng.integers(20, 120))))
            results.append({"image_id": image_id, "category_id": int(rng.integers(1, 91)), "score": float(rng.random()),
                            "bbox": [float(v) for v in rng.uniform(0, 600, 4)],
                            "segmentation": {"size": [480, 640], "counts": counts}})
    return results


def gather_table(argv) -> str:
    results = fake_results(5000, 100, np.random.default_rng(0))
    timings = {}
    start = time.perf_counter()
    pickled = pickle.dumps(results)
    back = pickle.loads(pickled)
    timings["pickle"] = (time.perf_counter() - start, len(pickled))
    start = time.perf_counter()
    text = json.dumps(results, separators=(",", ":"))
    joined = json.loads("[" + text[1:-1] + "]")
    timings["json"] = (time.perf_counter() - start, len(text.encode()))
    assert back == results and len(joined) == len(results)
    rows = [f"| {name} | {seconds:.2f} | {size / 1e6:.1f} |" for name, (seconds, size) in timings.items()]
    return "\n".join([
        "# Mask R-CNN evaluation gather: pickled dicts (this code) vs one JSON string per rank (NVIDIA v3.0)", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `{bench.command('maskrcnn', argv)}`, one process on "
        f"{bench.device_name(torch.device('cpu'))}.", "",
        f"{len(results):,} results (5,000 images x 100 detections, each a box and an RLE mask string). "
        "pickle: `pickle.dumps` + `pickle.loads` of the list (what `gather_object` of the list costs, split "
        "between the ranks and rank 0; `common.detection.gather_on_rank0`); json: `json.dumps` on the rank + "
        "`json.loads` of the joined string on rank 0 (NVIDIA's v3.0 way, with the bytes sent as one tensor). "
        "COCO's `loadRes` needs the dicts either way.", "",
        "| serialisation | seconds (serialise + deserialise) | MB sent |", "|---|---|---|", *rows, ""])


def main(argv=None) -> None:
    parser = bench.arguments(__doc__)
    parser.add_argument("--model", choices=["full", "debug"], default=None, help="default: CPU both, GPU full")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: GPU 12; CPU 4 and 2)")
    parser.add_argument("--size", type=int, default=None, help="shorter side (default: GPU 800; CPU 96 and 320)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: GPU 8, CPU 2)")
    parser.add_argument("--roi-align", choices=["torchvision", "separable"], default="torchvision",
                        help="ROI_ALIGN: torchvision's kernels or maskrcnn.roi_align's two matmuls (the CPU config's)")
    parser.add_argument("--gather", action="store_true", help="time the evaluation gather instead (see above)")
    args, device = bench.parse(parser, argv, warmup=(10, 1), steps=(30, 3))
    if args.gather:
        text = gather_table(argv)
        print(text)
        out = Path(args.out) if args.out else bench.REPO_ROOT / "docs" / "perf"
        out.mkdir(parents=True, exist_ok=True)
        (out / "maskrcnn_gather.md").write_text(text)
        return
    gpu = device.type == "cuda"
    args.workers = args.workers if args.workers is not None else (8 if gpu else 2)
    runs = [(args.model or "full", 12, 800)] if gpu else [r for r in CPU_RUNS if args.model in (None, r[0])]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_size, batch, size in runs:
            batch, size = args.batch or batch, args.size or size
            files = Path(tmp) / f"{model_size}_{batch}"
            spec = SyntheticSpec(min_side=480, max_side=640, max_objects=7)  # the real loader's input: COCO-sized
            write_images(files, "train", 2 * batch + 8, np.random.default_rng(0), spec)
            write_images(files, "val", 1, np.random.default_rng(1), spec, first_id=1_000_000)
            rows.append(measure(args, model_size, batch, size, files, device))
            print(f"{model_size} batch {batch} at {size} px: {rows[-1].alone.samples_per_s:.2f} images/s alone, "
                  f"{rows[-1].loaded.samples_per_s:.2f} with the loader", flush=True)
    notes = [f"{args.steps} timed steps after {args.warmup} warm-up steps, one process: resize, normalise and pad (in "
             "the model), forward, RPN + box + mask losses, backward, SGD; no evaluation.",
             "step alone: decoded images and masks resident in device memory; with loader: 480-640 px JPEGs with up "
             "to 7 polygon-annotated objects each, decoded, rasterised and flipped by the real DataLoader, then "
             "copied to the device.",
             f"anchor: NVIDIA v3.0, 1x DGX H100 (19.2 min, fp16, NHWC, CUDA graphs, fused kernels): "
             f"~{NVIDIA_H100_IMAGES_PER_S} images/s per H100 at 800/1333."]
    text = bench.table(f"Mask R-CNN training throughput on {bench.device_name(device)}",
                       bench.command("maskrcnn", argv), notes, rows, "images")
    bench.write_table(text, "maskrcnn", device, args.out, rows, "images")


if __name__ == "__main__":
    main()
