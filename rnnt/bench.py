"""RNN-T training throughput (utterances/s): the step alone, and with the real input pipeline.

Times the real training step (`rnnt.train.build_step`: the audio front end on the device —
dither, pre-emphasis, STFT, 80 mels, normalisation, SpecAugment, frame splicing — then the
encoder, prediction and joint networks, the transducer loss, backward, LAMB with global-norm
clipping and the EMA of the weights) through `common.bench`, twice: on batches resident in
device memory — the model's ceiling — and fed by the real loader (`rnnt.data`:
`TrainUtterances` reading 16 kHz PCM WAVs with soundfile, speed perturbation and silence
trimming in DataLoader workers, `EpochBatches`, `collate`), then the copy to the device. The
WAVs are written first, all of one duration, with random label ids at a fixed rate per second;
`--data-dir` reads a prepared LibriSpeech (or `rnnt.synthetic`) directory instead, as training
does. Prints a markdown table and writes it to docs/perf/rnnt_<device>.md.

    python3 -m rnnt.bench                                      # CPU: debug 32 x 2 s, full 4 x 12.3 s
    python3 -m rnnt.bench --model full --batch 192             # one H100 (bf16 by default on a GPU)
    python3 -m rnnt.bench --model full --batch 192 --data-dir /data/librispeech
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import bench, loader
from common.parallelize import parallelize_ddp
from common.precision import Precision
from rnnt import data
from rnnt.config import RULES, RNNTConfig
from rnnt.evaluate import EMA
from rnnt.features import Features, feature_frames
from rnnt.model import RNNTShape, build_rnnt
from rnnt.train import COMPILE_BLOCKS, build_step, to_device

# NVIDIA's v3.0 1x DGX H100 result (FACTS.md §5): 16.686 min to WER 0.058, ~1,741 utterances/s per H100.
NVIDIA_H100_UTTERANCES_PER_S = "1,741"
NVIDIA_BATCH = 192  # per GPU (config_DGXH100_1x8x192x1.sh)
# LibriSpeech's 960.9 h of training speech in 281,241 utterances (train-clean-100/360, train-other-500): 12.3 s each.
MEAN_DURATION = 12.3
LABELS_PER_S = 4.0  # an assumption for the synthetic labels, not measured against librispeech1023.model
CPU_RUNS = [("debug", 32, 2.0), ("full", 4, MEAN_DURATION)]  # model, batch, seconds per utterance
# NVIDIA's hyperparameters_1536.sh (the 1x8x192 run); only the LR schedule's first steps and the EMA touch the timing
NVIDIA_HYPERPARAMETERS = dict(lr=0.0072, warmup_epochs=5, hold_epochs=26, decay=0.92, ema=0.995)


def lstm_flops(inputs: int, hidden: int, layers: int) -> int:
    """Forward FLOPs of one time step of a stacked LSTM: 4 gates, input and hidden matmuls, 2 FLOPs a MAC."""
    return sum(8 * hidden * ((inputs if i == 0 else hidden) + hidden) for i in range(layers))


def train_flops(shape: RNNTShape, samples: int, labels: int) -> float:
    """3x the forward matmul FLOPs of one utterance at its own lengths (no padding): encoder LSTMs, time stacking,
    prediction LSTMs over labels + 1 steps, the joint's two projections and its output layer at every (t, u)."""
    frames = feature_frames(samples)
    stacked = -(-frames // shape.stack_time)
    steps = labels + 1
    forward = (frames * lstm_flops(shape.in_features, shape.enc_hidden, shape.enc_pre_layers)
               + stacked * lstm_flops(shape.stack_time * shape.enc_hidden, shape.enc_hidden, shape.enc_post_layers)
               + steps * lstm_flops(shape.pred_hidden, shape.pred_hidden, shape.pred_layers)
               + stacked * 2 * shape.enc_hidden * shape.joint_hidden
               + steps * 2 * shape.pred_hidden * shape.joint_hidden
               + stacked * steps * 2 * shape.joint_hidden * (shape.num_labels + 1))
    return 3.0 * forward


def write_utterances(root: Path, count: int, seconds: float, labels_per_s: float, num_labels: int,
                     seed: int = 0) -> list[data.Utterance]:
    """`count` 16 kHz PCM WAVs of `seconds` of noise (no silence to trim), each with random label ids."""
    import soundfile

    rng = np.random.default_rng(seed)
    n, tokens = round(seconds * RULES.sample_rate), max(1, round(seconds * labels_per_s))
    utterances = []
    for i in range(count):
        wav = root / "train-clean-100-wav" / f"{i:05d}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(wav), np.clip(rng.normal(0, 0.1, n), -1, 1), RULES.sample_rate, subtype="PCM_16")
        ids = tuple(int(t) for t in rng.integers(1, num_labels, tokens))  # 0 is <unk>, never a real label
        utterances.append(data.Utterance(wav, "", seconds, ids))
    return utterances


def read_utterances(root: Path) -> tuple[list[data.Utterance], int]:
    """The training splits of a prepared directory, as `rnnt.train` reads them, and the tokenizer's size."""
    tokenizer = data.Tokenizer(data.tokenizer_path(root))
    return data.read_training(root, tokenizer), len(tokenizer)


def measure(args, model_size: str, batch: int, utterances: list[data.Utterance], num_labels: int,
            device: torch.device) -> bench.Row:
    precision = Precision(args.precision, device.type)
    shape = RNNTShape() if model_size == "full" else RNNTShape.debug(num_labels)
    if shape.num_labels != num_labels:
        raise SystemExit(f"the full model needs the 1023-piece tokenizer; {args.data_dir} has {num_labels} pieces")
    cfg = RNNTConfig(batch_size=batch, eval_batch_size=batch, num_epochs=1, **NVIDIA_HYPERPARAMETERS)
    torch.manual_seed(0)
    raw = build_rnnt(shape, cfg.init_scale).to(device)
    ema = EMA(raw, cfg.ema)  # before compiling: the EMA copy stays a plain module, as in training
    model = parallelize_ddp(raw, device=device, world_size=1, precision=precision,
                            compile_blocks=COMPILE_BLOCKS if args.compile else None)
    session = SimpleNamespace(seed=0, rank=0, precision=precision, device=device)  # what build_step reads
    step = build_step(model, raw, Features().to(device), cfg, session, ema, steps_per_epoch=1000)
    sampler = data.EpochBatches([u.duration for u in utterances], batch, 1, 0, seed=0, num_buckets=cfg.num_buckets)
    train_loader = DataLoader(data.TrainUtterances(utterances, seed=0), batch_sampler=sampler,
                              collate_fn=data.collate, num_workers=args.workers, pin_memory=device.type == "cuda",
                              persistent_workers=args.workers > 0)
    first = iter(train_loader)
    resident = [next(first) for _ in range(min(2, len(sampler)))]
    flops = np.mean([train_flops(shape, int(n), int(u)) for b in resident for n, u in zip(b[1], b[3])])
    seconds = float(np.mean([float(b[1].float().mean()) for b in resident])) / RULES.sample_rate
    resident = [to_device(b, device) for b in resident]
    batches = loader.on_device(loader.epochs(train_loader), lambda b: to_device(b, device))
    alone, loaded = bench.step_alone_and_with_loader(step, resident, batches, warmup=args.warmup, steps=args.steps,
                                                     device=device)
    params = sum(p.numel() for p in raw.parameters())
    full = model_size == "full"
    name = (f"RNN-T ({params / 1e6:.1f}M params)" if full else
            f"debug (LSTM {shape.enc_hidden}/{shape.pred_hidden}, {shape.num_labels} labels)")
    return bench.Row(name, f"{batch} x {seconds:.1f} s", args.precision, alone, loaded, float(flops),
                     NVIDIA_H100_UTTERANCES_PER_S if full and batch == NVIDIA_BATCH else "-",
                     {"compile": args.compile, "loader workers": args.workers})


def main(argv=None) -> int:
    parser = bench.arguments(__doc__)
    parser.add_argument("--model", choices=["full", "debug"], default=None, help="default: CPU both, GPU full")
    parser.add_argument("--batch", type=int, default=None, help="utterances per step (default: GPU 192; CPU 32, 4)")
    parser.add_argument("--duration", type=float, default=None,
                        help=f"seconds per written utterance (default: GPU {MEAN_DURATION}; CPU 2 and {MEAN_DURATION})")
    parser.add_argument("--labels-per-s", type=float, default=LABELS_PER_S, help="label ids per second of audio")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="read this prepared LibriSpeech layout instead of writing WAVs")
    parser.add_argument("--compile", action="store_true", help=f"torch.compile {', '.join(COMPILE_BLOCKS)}")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: GPU 8, CPU 1)")
    args, device = bench.parse(parser, argv, warmup=(10, 1), steps=(30, 3))
    gpu = device.type == "cuda"
    args.workers = args.workers if args.workers is not None else (8 if gpu else 1)
    runs = ([(args.model or "full", NVIDIA_BATCH, MEAN_DURATION)] if gpu
            else [r for r in CPU_RUNS if args.model in (None, r[0])])
    load = os.getloadavg()
    rows = []
    prepared = read_utterances(args.data_dir) if args.data_dir else None
    with tempfile.TemporaryDirectory() as tmp:
        for model_size, batch, seconds in runs:
            batch, seconds = args.batch or batch, args.duration or seconds
            if prepared:
                utterances, num_labels = prepared
            else:
                num_labels = RNNTShape().num_labels
                utterances = write_utterances(Path(tmp) / f"{model_size}_{batch}", 2 * batch, seconds,
                                              args.labels_per_s, num_labels)
            rows.append(measure(args, model_size, batch, utterances, num_labels, device))
            print(f"{model_size} batch {rows[-1].batch}: {rows[-1].alone.samples_per_s:.2f} utterances/s alone, "
                  f"{rows[-1].loaded.samples_per_s:.2f} with the loader", flush=True)
    source = (f"the training splits of `{args.data_dir}` (utterances <= {RULES.max_duration} s), as rnnt.train reads "
              "them" if args.data_dir else
              f"16 kHz PCM WAVs of noise, all of one duration, written first, with {args.labels_per_s:g} random label "
              "ids per second of audio (an assumption: not measured against librispeech1023.model)")
    notes = [f"{args.steps} timed steps after {args.warmup} warm-up steps, one process: the front end on the device "
             "(dither, pre-emphasis, STFT, 80 mels, normalisation, SpecAugment, splicing), encoder, prediction and "
             "joint networks, transducer loss (torchaudio), backward, LAMB with clipping, EMA; no evaluation.",
             f"utterances: {source}; read by soundfile, speed-perturbed (0.85-1.15) and trimmed by the real DataLoader "
             "(rnnt.data). batch: utterances x their mean duration after perturbation, over the resident batches.",
             "step alone: the loader's first two batches resident in device memory; with loader: the DataLoader's "
             "batches, then copied to the device.",
             f"duration default {MEAN_DURATION} s: LibriSpeech's mean training utterance (960.9 h in 281,241).",
             "model TFLOP/s: 3x the forward matmul FLOPs (LSTM gates, joint projections, joint output at every "
             "encoder frame x label) at each utterance's own lengths, padding not counted.",
             f"compile: torch.compile of {', '.join(COMPILE_BLOCKS)} (what rnnt.train compiles with TORCH_COMPILE=1).",
             f"anchor (NVIDIA's, not measured here): NVIDIA v3.0, 1x DGX H100 (16.7 min, batch {NVIDIA_BATCH} per GPU, "
             "fp16, DALI, apex's transducer joint and loss, fused LAMB) on LibriSpeech: "
             f"~{NVIDIA_H100_UTTERANCES_PER_S} utterances/s per H100 (FACTS.md §5); shown for the full model at "
             f"batch {NVIDIA_BATCH}.",
             f"load average before measuring: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min) on {os.cpu_count()} CPUs; "
             "other processes on a shared machine slow multi-threaded CPU kernels a lot."]
    text = bench.table(f"RNN-T training throughput on {bench.device_name(device)}", bench.command("rnnt", argv),
                       notes, rows, "utterances")
    bench.write_table(text, "rnnt", device, args.out, rows, "utterances")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
