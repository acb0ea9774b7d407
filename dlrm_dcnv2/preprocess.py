"""Criteo 1TB raw TSV days -> the reference's numpy layout, and numpy -> NVIDIA's binary layout.

    python3 -m dlrm_dcnv2.preprocess tsv RAW_DIR OUT_DIR [--days 0-23]   # day_0 ... day_23 (uncompressed)
    python3 -m dlrm_dcnv2.preprocess binary NUMPY_DIR OUT_DIR            # train_data.bin, val_data.bin

`tsv`, per row of `day_{i}` (label, 13 integers, 26 hex categories, tab-separated):
- dense: missing -> 0, negative -> 0, then log(x + 3) as float32;
- categories: each feature's distinct values over all the days given, in sorted
  order, become 0, 1, 2, ... (contiguous); ids beyond the table's rows wrap
  modulo its size (the published row counts cap the big features at 40M);
- multi-hot with the published hotness, "uniform", seed 0: a sample keeps its id
  first and adds hotness-1 ids (id + offset_k) mod rows, the offsets drawn once per
  (feature, id mod 1024, k) — so a multi-hot bag is a function of the one-hot id.
Writes day_{i}_labels.npy, day_{i}_dense.npy, day_{i}_sparse.npy (one-hot) and
day_{i}_sparse_multi_hot.npz. The vocabulary pass keeps every distinct value of every
feature in memory: fine for tests and samples, tens of GB for the whole of Criteo 1TB.

`binary` writes days 0-22 into train_data.bin and the first 89,137,319 rows of day 23
into val_data.bin, record by record in chunks (NVIDIA's convert_to_raw.py layout).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from dlrm_dcnv2 import data
from dlrm_dcnv2.config import HOTNESS, RULES, TABLE_ROWS
from dlrm_dcnv2.model import ModelShape

NUM_CATEGORICAL = len(TABLE_ROWS)
OFFSET_CACHE = 1024  # distinct offset vectors per feature
CHUNK_ROWS = 1 << 16


class PreprocessError(ValueError):
    """A raw file does not follow Criteo's TSV layout."""


def read_tsv(path: Path) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """labels [N], raw dense [N,13] (missing -> 0), categorical columns (26 lists of hex strings)."""
    labels, dense, cats = [], [], [[] for _ in range(NUM_CATEGORICAL)]
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 1 + RULES.num_dense + NUM_CATEGORICAL:
                raise PreprocessError(f"{path}:{n}: {len(fields)} tab-separated fields, expected 40")
            try:
                labels.append(int(fields[0]))
                dense.append([int(x) if x else 0 for x in fields[1:14]])
            except ValueError as e:
                raise PreprocessError(f"{path}:{n}: label or integer feature is not an integer ({e})") from None
            for j, value in enumerate(fields[14:]):
                cats[j].append(value)
    return np.asarray(labels, np.int32), np.asarray(dense, np.float64).reshape(-1, RULES.num_dense), cats


def hex_ids(path: Path, j: int, values: list[str]) -> np.ndarray:
    try:
        return np.fromiter((int(v, 16) if v else 0 for v in values), dtype=np.int64, count=len(values))
    except ValueError as e:
        raise PreprocessError(f"{path}: categorical feature {j} has a value that is not hex ({e})") from None


def multi_hot_offsets(table_rows: Sequence[int], hotness: Sequence[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, rows, size=(OFFSET_CACHE, h - 1)) for rows, h in zip(table_rows, hotness)]


def materialize_multi_hot(one_hot: np.ndarray, rows: int, offsets: np.ndarray) -> np.ndarray:
    """[N] ids -> [N, hotness]: the id, then (id + offset) mod rows for its cached offsets."""
    extra = (one_hot[:, None] + offsets[one_hot % OFFSET_CACHE]) % rows
    return np.concatenate([one_hot[:, None], extra], axis=1).astype(np.int32)


def tsv_to_numpy(raw_dir: Path, out_dir: Path, days: Sequence[int], table_rows: Sequence[int] = TABLE_ROWS,
                 hotness: Sequence[int] = HOTNESS, seed: int = 0) -> None:
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [raw_dir / f"day_{d}" for d in days]
    for path in paths:
        if not path.is_file():
            raise PreprocessError(f"{path}: missing (uncompressed Criteo day file expected)")
    vocab: list[set] = [set() for _ in range(NUM_CATEGORICAL)]
    for path in paths:  # pass 1: every feature's distinct values
        _, _, cats = read_tsv(path)
        for j, values in enumerate(cats):
            vocab[j].update(hex_ids(path, j, values).tolist())
    sorted_vocab = [np.fromiter(sorted(v), dtype=np.int64, count=len(v)) for v in vocab]
    offsets = multi_hot_offsets(table_rows, hotness, seed)
    for day, path in zip(days, paths):  # pass 2: write the day
        labels, dense, cats = read_tsv(path)
        one_hot = np.stack([np.searchsorted(sorted_vocab[j], hex_ids(path, j, values)) % table_rows[j]
                            for j, values in enumerate(cats)], axis=1) if len(labels) else \
            np.zeros((0, NUM_CATEGORICAL), np.int64)
        np.save(out_dir / data.ONE_HOT_FILE.format(day=day), one_hot.astype(np.int32))
        rows = data.Rows(labels, np.log(np.maximum(dense, 0) + 3).astype(np.float32),
                         [materialize_multi_hot(one_hot[:, j], table_rows[j], offsets[j])
                          for j in range(NUM_CATEGORICAL)])
        data.write_day(out_dir, day, rows)
        print(f"{path} -> {out_dir}/day_{day}_*: {len(labels)} rows", flush=True)


def numpy_to_binary(numpy_dir: Path, out_dir: Path, shape: ModelShape, train_days: Sequence[int] = RULES.train_days,
                    eval_day: int = RULES.eval_day) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = data.record_dtype(shape.hotness)
    for name, split, days in ((data.TRAIN_BINARY, "train", train_days), (data.EVAL_BINARY, "eval", (eval_day,))):
        source = data.open_split(numpy_dir, split, "numpy", shape, days=days)
        with open(out_dir / name, "wb") as out:
            for start in range(0, len(source), CHUNK_ROWS):
                rows = source.read(start, start + CHUNK_ROWS)
                records = np.empty(len(rows), dtype)
                records["label"], records["dense"] = rows.labels, rows.dense
                records["sparse"] = np.concatenate(rows.sparse, axis=1)
                out.write(records.tobytes())
        print(f"{out_dir / name}: {len(source)} records of {dtype.itemsize} bytes", flush=True)


def parse_days(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(d) for d in text.split(",")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    tsv = sub.add_parser("tsv", help="raw Criteo TSV days -> numpy layout")
    tsv.add_argument("raw_dir", type=Path)
    tsv.add_argument("out_dir", type=Path)
    tsv.add_argument("--days", type=parse_days, default=list(range(24)), help="e.g. 0-23 or 0,23")
    tsv.add_argument("--model-size", choices=["full", "debug"], default="full",
                     help="whose table sizes cap the ids (debug: the CPU model's)")
    binary = sub.add_parser("binary", help="numpy layout -> NVIDIA's train_data.bin / val_data.bin")
    binary.add_argument("numpy_dir", type=Path)
    binary.add_argument("out_dir", type=Path)
    binary.add_argument("--model-size", choices=["full", "debug"], default="full")
    args = parser.parse_args(argv)
    shape = ModelShape.small() if args.model_size == "debug" else ModelShape.full()
    if args.command == "tsv":
        tsv_to_numpy(args.raw_dir, args.out_dir, args.days, shape.table_rows, shape.hotness)
    else:
        numpy_to_binary(args.numpy_dir, args.out_dir, shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
