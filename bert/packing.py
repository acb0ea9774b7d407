"""Pack variable-length BERT shards into rows of up to 3 sequences (NVIDIA's packed layout).

    python3 -m bert.packing --out DIR/packed_data SHARD [SHARD ...]

Each input shard becomes one packed shard `part_XXXXX` (its position in the
sorted input list), so shards pack in parallel and in bounded memory; with
tens of thousands of sequences per shard, packing within a shard is about as
tight as packing globally. Sequences are placed longest first into the fullest
row that still has room (best-fit decreasing, at most 3 per row, rows of at
most `max_seq_len` tokens); rows are then shuffled with a seed. Masked-LM
positions are shifted by the offset of their sequence in the row. NVIDIA's
own tool (`input_preprocessing/packed_data/`) solves for a packing strategy
over the global length histogram instead; both reach about 2 sequences per
row on the phase-2 data.
"""
from __future__ import annotations

import argparse
import bisect
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bert.config import RULES
from bert.data import Rows, read_shard, row_predictions, write_packed


def best_fit_decreasing(lengths: np.ndarray, capacity: int, max_per_row: int) -> list[list[int]]:
    """Group sequence indices into rows: total length <= capacity, at most max_per_row each."""
    rows: list[list[int]] = []
    space: list[int] = []
    open_rows: list[tuple[int, int]] = []  # (free tokens, row), sorted; rows that can take more
    for i in np.argsort(-lengths, kind="stable"):
        n = int(lengths[i])
        if n > capacity:
            raise ValueError(f"sequence {i} has {n} tokens, more than the row capacity {capacity}")
        at = bisect.bisect_left(open_rows, (n, -1))
        if at < len(open_rows):
            free, row = open_rows.pop(at)
        else:
            row, free = len(rows), capacity
            rows.append([])
            space.append(capacity)
        rows[row].append(int(i))
        space[row] = free - n
        if len(rows[row]) < max_per_row and space[row] > 0:
            bisect.insort(open_rows, (space[row], row))
    return rows


def pack_rows(seqs: Rows, groups: list[list[int]]) -> Rows:
    out = Rows([], [], [], [], [], [], [])
    for group in groups:
        offsets = np.cumsum([0] + [len(seqs.input_ids[i]) for i in group])[:-1]
        out.input_ids.append(np.concatenate([seqs.input_ids[i] for i in group]))
        out.segment_ids.append(np.concatenate([seqs.segment_ids[i] for i in group]))
        out.masked_positions.append(np.concatenate(
            [seqs.masked_positions[i].astype(np.int64) + off for i, off in zip(group, offsets)]))
        out.masked_ids.append(np.concatenate([seqs.masked_ids[i] for i in group]))
        out.seq_lens.append(np.array([len(seqs.input_ids[i]) for i in group]))
        out.masked_lens.append(np.array([len(seqs.masked_positions[i]) for i in group]))
        out.nsp_labels.append(np.concatenate([seqs.nsp_labels[i] for i in group]))
    return out


def pack_shard(src: Path, dst: Path, max_seq_len: int, max_predictions: int, seed: int) -> tuple[int, int]:
    """Pack one variable-length shard; returns (sequences, rows)."""
    seqs = read_shard(src, max_seq_len, max_predictions)
    if any(len(s) != 1 for s in seqs.seq_lens):
        raise ValueError(f"{src}: already packed")
    lengths = np.array([len(t) for t in seqs.input_ids])
    groups = best_fit_decreasing(lengths, max_seq_len, RULES.max_sequences_per_row)
    for g in groups:  # the packed row must fit the reader's per-row prediction slots
        if sum(len(seqs.masked_positions[i]) for i in g) > row_predictions(max_predictions):
            raise ValueError(f"{src}: a packed row would exceed {row_predictions(max_predictions)} predictions")
    order = np.random.default_rng([seed, len(lengths)]).permutation(len(groups))
    write_packed(dst, pack_rows(seqs, [groups[i] for i in order]))
    return len(lengths), len(groups)


def pack_shards(shards: list[Path], out_dir: Path, *, max_seq_len: int = RULES.max_seq_length,
                max_predictions: int = RULES.max_predictions_per_seq, seed: int = 12345,
                workers: int = 1) -> float:
    """Pack every shard into out_dir/part_XXXXX; returns the average sequences per row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(src, out_dir / f"part_{i:05d}", max_seq_len, max_predictions, seed + i)
            for i, src in enumerate(sorted(shards))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            counts = list(pool.map(pack_shard, *zip(*jobs)))
    else:
        counts = [pack_shard(*job) for job in jobs]
    sequences, rows = map(sum, zip(*counts))
    print(f"packed {sequences} sequences into {rows} rows ({sequences / rows:.3f} per row) in {out_dir}")
    return sequences / rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", type=Path, nargs="+", help="variable-length HDF5 shards")
    parser.add_argument("--out", type=Path, required=True, help="output directory (packed_data)")
    parser.add_argument("--max-seq-len", type=int, default=RULES.max_seq_length)
    parser.add_argument("--max-predictions", type=int, default=RULES.max_predictions_per_seq)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    pack_shards(args.shards, args.out, max_seq_len=args.max_seq_len, max_predictions=args.max_predictions,
                seed=args.seed, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
