"""Criteo 1TB raw TSV days -> the MLCommons reference's dataset, id for id; numpy -> NVIDIA's binary layout.

    python3 -m dlrm_dcnv2.preprocess tsv RAW_DIR OUT_DIR [--days 0-23] [--work-dir DIR]  # raw day_0 .. day_23
    python3 -m dlrm_dcnv2.preprocess binary NUMPY_DIR OUT_DIR                           # train_data.bin, val_data.bin

The reference (mlcommons/training at 1f22be54f44a, recommendation_v2/torchrec_dlrm/; its requirements.txt pins
torchrec==0.3.2) builds its dataset with two scripts.
scripts/process_Criteo_1TB_Click_Logs_dataset.sh:
  1. `python -m torchrec.datasets.scripts.npy_preproc_criteo`: `BinaryCriteoUtils.tsv_to_npys` on each day_i:
     missing fields -> 0, labels int32 [N, 1], the 26 categories parsed as hex, the 13 integers as float32 logs.
  2. `python -m torchrec.datasets.scripts.contiguous_preproc_criteo --frequency_threshold 0`:
     `BinaryCriteoUtils.sparse_to_contiguous` over day_0 .. day_23 in that order: per feature, each distinct
     value becomes 2, 3, 4, ... in order of first appearance (threshold 0: no value is folded into id 1).
  3. `python -m torchrec.datasets.scripts.shuffle_preproc_criteo --random_seed 0`: `BinaryCriteoUtils.shuffle`
     stacks days 0-22 into one float32 array, `np.random.seed(0); np.random.shuffle` its rows and cuts it back
     into days of the same sizes; the ids are cast back to int32, so those above 2**24 come back rounded to
     float32's precision. Day 23 is copied unshuffled.
scripts/materialize_synthetic_multihot_dataset.py, with multi_hot.py's `Multihot` ("uniform"):
  `np.random.seed(0)`, then for feature j = 0..25 in turn a table [rows_j, hotness_j]: column 0 is 0..rows_j-1,
  the others `np.random.randint(0, rows_j, size=(rows_j, hotness_j - 1))`. Day i's bags of feature j are
  table_j[sparse[:, j] % rows_j], saved with `np.savez` as day_{i}_sparse_multi_hot.npz (members "0".."25",
  int32 [N, hotness_j]). That modulo is where the reference caps ids at num_embeddings_per_feature
  (`TABLE_ROWS`); its multi-hot loader (data/multi_hot_criteo.py) does not apply it again.

`tsv` runs the same steps, calling TorchRec's functions, and writes day_{i}_labels.npy, day_{i}_dense.npy,
day_{i}_sparse.npy (the reference's one-hot ids, uncapped, int32) and day_{i}_sparse_multi_hot.npz, the layout
`dlrm_dcnv2.data` reads. Without holding a day set in memory:
  1. `tsv_to_npys` runs on pieces of a day (--piece-rows lines), each led by a row with the day's smallest
     integer in all 13 fields, dropped again, so that the day-wide min of TorchRec >= 1.3's transform is the day's;
  2. `sparse_to_contiguous` (threshold 0) runs once per feature, on that feature's column of every day: it numbers
     each column on its own, so this is its result in 1/26 of the memory;
  3. the shuffle is `BinaryCriteoUtils.shuffle`'s: the permutation of a legacy RandomState(0) shuffle of the row
     numbers, the ids' float32 round trip, rows moved through per-day bucket files;
  4. the multi-hot tables come from one RandomState(0) stream in the reference's order, drawn in row chunks
     (the same stream), kept on disk; each npz is written member by member (the bytes `np.savez` writes).
Other --days run the same steps on those days only; --eval-day (23) is the day left unshuffled.
Resumable: every file is written under a temporary name and renamed, and a rerun skips each day, feature or
table set whose outputs exist; a day whose four files exist is done. A line per unit tells the time elapsed
and left. The work folder (OUT_DIR/tsv_work unless --work-dir) is removed once every day is done.

Dense values: torchrec 0.3.2 (the reference's) and 1.2.0 (dlrm_dcnv2/Dockerfile) write log(x + 3); torchrec
>= 1.3 (1.9.2 in the Makefile) writes log(x - m + 2), m the day's smallest integer: the same values when m = -1.
`tsv` prints m per day and warns where the installed TorchRec's values differ from the reference's.

`binary` writes days 0-22 into train_data.bin and the first 89,137,319 rows of day 23 into val_data.bin,
record by record in chunks (NVIDIA's convert_to_raw.py layout).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import os
import shutil
import time
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from torchrec.datasets.criteo import DEFAULT_COLUMN_NAMES, BinaryCriteoUtils

from dlrm_dcnv2 import data
from dlrm_dcnv2.config import HOTNESS, RULES, TABLE_ROWS
from dlrm_dcnv2.model import ModelShape

NUM_DENSE, NUM_SPARSE = RULES.num_dense, len(TABLE_ROWS)
NUM_FIELDS = 1 + NUM_DENSE + NUM_SPARSE
FREQUENCY_THRESHOLD = 0  # process_Criteo_1TB_Click_Logs_dataset.sh: contiguous_preproc_criteo --frequency_threshold 0
SHUFFLE_SEED = 0  # process_Criteo_1TB_Click_Logs_dataset.sh: shuffle_preproc_criteo --random_seed 0
MULTI_HOT_SEED = 0  # multi_hot.py, Multihot.__make_multi_hot_indices_tables: np.random.seed(0)
PIECE_ROWS = 4_000_000  # raw lines per tsv_to_npys call (its Python lists: ~2 KB a line, ~8 GB)
COPY_ROWS = 1 << 20  # rows per chunk in the streaming steps
DRAW_VALUES = 1 << 22  # random ids per chunk when drawing a multi-hot table
CHUNK_ROWS = 1 << 16  # records per write in `binary`
WORK_DIR = "tsv_work"
MANIFEST = "tsv_manifest.json"
_RECORD = np.dtype([("row", "<u4"), ("label", "<i4", (1,)), ("dense", "<f4", (NUM_DENSE,)),
                    ("sparse", "<i4", (NUM_SPARSE,))])  # one row in a shuffle bucket


class PreprocessError(ValueError):
    """A raw file does not follow Criteo's TSV layout, or the output folder belongs to another run."""


class Progress:
    """A line per unit of a step: how much is done, the time elapsed and an estimate of the time left."""

    def __init__(self, step: str, total: float):
        self.step, self.total, self.done, self.start = step, float(total), 0.0, time.monotonic()

    def skip(self, what: str, amount: float = 0) -> None:
        self.total -= amount
        print(f"[{self.step}] {what}: already complete, skipped", flush=True)

    def advance(self, what: str, amount: float = 1) -> None:
        self.done += amount
        elapsed = time.monotonic() - self.start
        left = elapsed / self.done * max(self.total - self.done, 0.0) if self.done else 0.0
        share = self.done / self.total if self.total > 0 else 1.0
        print(f"[{self.step}] {what}: {share:.0%} done, {_hms(elapsed)} elapsed, ~{_hms(left)} left", flush=True)


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _save(path: Path, array: np.ndarray) -> None:
    with open(_tmp(path), "wb") as f:
        np.save(f, array)
    os.replace(_tmp(path), path)


def _new_npy(path: Path, dtype, shape: tuple) -> np.memmap:
    """A `.npy` memory map under the temporary name of `path`; `_commit` renames it."""
    return np.lib.format.open_memmap(_tmp(path), mode="w+", dtype=dtype, shape=shape)


def _commit(maps: dict[Path, np.memmap]) -> None:
    for path, array in maps.items():
        array.flush()
        os.replace(_tmp(path), path)


def _rows(path: Path) -> int:
    return len(np.load(path, mmap_mode="r"))


# ---- step 1: raw TSV -> dense, labels and the 26 hex-parsed columns (tsv_to_npys) ----

def _bad_field(path: Path, line_no: int, fields: list[str]) -> PreprocessError | None:
    """The first field of a 40-field line that TorchRec's row mapper cannot parse, as an error."""
    for k, value in enumerate(fields):
        try:
            int(value or "0", 16 if k > NUM_DENSE else 10)
        except ValueError:
            kind = "a hexadecimal category" if k > NUM_DENSE else "an integer"
            return PreprocessError(f"{path}:{line_no}: field {k + 1} ({DEFAULT_COLUMN_NAMES[k]}) is {value!r}, "
                                   f"expected {kind} or nothing")
    return None


def scan_day(path: Path) -> tuple[int, int]:
    """Rows and smallest integer feature (missing = 0) of a raw day; the first malformed line is named."""
    rows, smallest = 0, None
    with open(path) as f:
        for rows, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != NUM_FIELDS:
                raise PreprocessError(f"{path}:{rows}: {len(fields)} tab-separated fields, expected {NUM_FIELDS} "
                                      f"(label, {NUM_DENSE} integers, {NUM_SPARSE} hex categories)")
            try:
                values = [int(v or "0") for v in fields[:1 + NUM_DENSE]][1:]
            except ValueError:
                raise _bad_field(path, rows, fields) from None
            low, high = min(values), max(values)
            if high > np.iinfo(np.int32).max or low < np.iinfo(np.int32).min:
                raise PreprocessError(f"{path}:{rows}: integer {high if high > 0 else low} does not fit the int32 "
                                      f"that TorchRec's tsv_to_npys parses the 13 integers into")
            if smallest is None or low < smallest:
                smallest = low
    if smallest is None:
        raise PreprocessError(f"{path}: empty; expected Criteo rows (label, {NUM_DENSE} integers, "
                              f"{NUM_SPARSE} hex categories)")
    return rows, smallest


def _tsv_to_npys(tsv: Path, dense: Path, sparse: Path, labels: Path) -> None:
    with warnings.catch_warnings():  # torch's datapipes warn that TorchRec's row mapper is a local function
        warnings.filterwarnings("ignore", message="Local function is not supported by pickle")
        BinaryCriteoUtils.tsv_to_npys(str(tsv), str(dense), str(sparse), str(labels))


def torchrec_dense_transform(work: Path) -> str:
    """What the installed TorchRec's tsv_to_npys writes: found by running it on one row of 5s."""
    work.mkdir(parents=True, exist_ok=True)
    tsv, dense = work / "probe.tsv", work / "probe_dense.npy"
    tsv.write_text("\t".join(["0"] + ["5"] * NUM_DENSE + ["a"] * NUM_SPARSE) + "\n")
    _tsv_to_npys(tsv, dense, work / "probe_sparse.npy", work / "probe_labels.npy")
    value = float(np.load(dense)[0, 0])
    for name in ("probe.tsv", "probe_dense.npy", "probe_sparse.npy", "probe_labels.npy"):
        (work / name).unlink()
    return {float(np.float32(np.log(8))): "log(x + 3)", float(np.float32(np.log(2))): "log(x - min + 2)"}.get(
        value, f"unknown (5 -> {value})")


def _column_file(folder: Path, j: int, day: int) -> Path:
    return folder / f"sparse_{j}" / f"day_{day}.npy"  # sparse_to_contiguous keys its outputs by "day_{day}"


def _raw_day(raw: Path, day: int, step1: Path, columns: Sequence[int], piece_rows: int, transform: str,
             progress: Progress) -> None:
    """Day `day`'s dense, labels and `columns` of hex-parsed ids, from tsv_to_npys run on pieces of the day."""
    rows, smallest = scan_day(raw)
    note = ""
    if transform == "log(x - min + 2)" and smallest != -1:
        note = (f"; WARNING: this TorchRec writes log(x + {2 - smallest}) here, the reference's torchrec 0.3.2 "
                f"log(x + 3): dense values differ from the reference's")
    print(f"[tsv_to_npys] {raw}: {rows:,} rows, smallest integer {smallest}{note}", flush=True)
    dense_path, labels_path = step1 / data.DENSE_FILE.format(day=day), step1 / data.LABELS_FILE.format(day=day)
    out = {dense_path: _new_npy(dense_path, np.float32, (rows, NUM_DENSE)),
           labels_path: _new_npy(labels_path, np.int32, (rows, 1))}
    for j in columns:
        _column_file(step1, j, day).parent.mkdir(parents=True, exist_ok=True)
        out[_column_file(step1, j, day)] = _new_npy(_column_file(step1, j, day), np.int64, (rows, 1))
    piece = step1 / f"day_{day}.piece.tsv"
    piece_out = [step1 / f"day_{day}.piece_{part}.npy" for part in ("dense", "sparse", "labels")]
    # Every value of the day is >= `smallest`: a first row of it makes each piece's minimum the day's.
    lead = "\t".join(["0"] + [str(smallest)] * NUM_DENSE + [""] * NUM_SPARSE) + "\n"
    start = 0
    with open(raw) as f:
        while lines := list(itertools.islice(f, piece_rows)):
            with open(piece, "w") as p:
                p.write(lead)
                p.writelines(lines)
            stop = start + len(lines)
            try:
                _tsv_to_npys(piece, *piece_out)
            except (ValueError, IndexError, OverflowError) as e:
                for n, line in enumerate(lines, start + 1):
                    if (error := _bad_field(raw, n, line.rstrip("\n").split("\t"))) is not None:
                        raise error from e
                raise PreprocessError(f"{raw}: TorchRec's tsv_to_npys failed on lines {start + 1}-{stop}: {e}") from e
            dense, sparse, labels = (np.load(p) for p in piece_out)
            out[dense_path][start:stop] = dense[1:]
            out[labels_path][start:stop] = labels[1:]
            for j in columns:
                out[_column_file(step1, j, day)][start:stop, 0] = sparse[1:, j]
            progress.advance(f"day_{day} lines {start + 1:,}-{stop:,}", sum(map(len, lines)))
            start = stop
    if start != rows:
        raise PreprocessError(f"{raw}: {start} lines on the second read, {rows} on the first; changed meanwhile?")
    for path in (piece, *piece_out):
        path.unlink()
    _commit(out)


# ---- step 2: contiguous ids (sparse_to_contiguous), then one [N, 26] int32 file per day ----

def _contiguous(step1: Path, step2: Path, days: Sequence[int]) -> None:
    progress = Progress("sparse_to_contiguous", NUM_SPARSE)
    for j in range(NUM_SPARSE):
        if _column_done(step2, j, days):
            progress.skip(f"feature {j}", 1)
            continue
        torchrec_out = step2 / f"sparse_{j}.torchrec"
        shutil.rmtree(torchrec_out, ignore_errors=True)
        torchrec_out.mkdir(parents=True)
        BinaryCriteoUtils.sparse_to_contiguous([str(_column_file(step1, j, d)) for d in days], str(torchrec_out),
                                               frequency_threshold=FREQUENCY_THRESHOLD, columns=1)
        _column_file(step2, j, days[0]).parent.mkdir(parents=True, exist_ok=True)
        largest = 0
        for d in days:
            ids = np.load(torchrec_out / f"day_{d}_contig_freq.npy").reshape(-1)
            largest = max(largest, int(ids.max()))
            if largest > np.iinfo(np.int32).max:
                raise PreprocessError(f"feature {j}: {largest} contiguous ids do not fit the reference's int32")
            _save(_column_file(step2, j, d), ids.astype(np.int32))
        shutil.rmtree(torchrec_out)
        shutil.rmtree(step1 / f"sparse_{j}")
        progress.advance(f"feature {j} ({largest - 1:,} distinct values)")
    for d in days:  # the reference's step 2 output: day_{d}_sparse.npy, [N, 26]
        path = step2 / data.ONE_HOT_FILE.format(day=d)
        if path.exists():
            continue
        columns = [np.load(_column_file(step2, j, d), mmap_mode="r") for j in range(NUM_SPARSE)]
        out = _new_npy(path, np.int32, (len(columns[0]), NUM_SPARSE))
        for start in range(0, len(out), COPY_ROWS):
            out[start:start + COPY_ROWS] = np.stack([c[start:start + COPY_ROWS] for c in columns], axis=1)
        _commit({path: out})
        for j in range(NUM_SPARSE):
            _column_file(step2, j, d).unlink()


def _column_done(step2: Path, j: int, days: Sequence[int]) -> bool:
    return all(_column_file(step2, j, d).exists() or (step2 / data.ONE_HOT_FILE.format(day=d)).exists()
               for d in days)


# ---- step 3: BinaryCriteoUtils.shuffle, streamed ----

def _shuffle_destinations(n: int, seed: int) -> np.ndarray:
    """dest[i]: the row that source row i has after `np.random.seed(seed); np.random.shuffle(rows)`.

    The legacy generator's shuffle draws the same swaps for a [n, 40] array as for a 1-D one of n numbers, so
    shuffling 0..n-1 gives `order`, the source row of each shuffled row; `dest` is its inverse."""
    order = np.arange(n, dtype=np.uint32 if n <= 1 << 32 else np.int64)
    np.random.RandomState(seed).shuffle(order)
    dest = np.empty_like(order)
    for start in range(0, n, COPY_ROWS):
        dest[order[start:start + COPY_ROWS]] = np.arange(start, min(start + COPY_ROWS, n), dtype=order.dtype)
    return dest


def _day_files(folder: Path, day: int) -> list[Path]:
    return [folder / name.format(day=day) for name in (data.LABELS_FILE, data.DENSE_FILE, data.ONE_HOT_FILE)]


def shuffle_days(labels_dense_dir: Path, sparse_dir: Path, out_dir: Path, days: Sequence[int],
                 seed: int = SHUFFLE_SEED, work_dir: Path | None = None) -> None:
    """`BinaryCriteoUtils.shuffle` of `days` (day_{d}_{labels,dense}.npy and day_{d}_sparse.npy) into `out_dir`.

    The same rows in the same places, ids and labels through float32 as in its array, without the array: the
    rows go to per-day bucket files (pass 1), then each day is laid out (pass 2). A day whose three files exist
    in `out_dir` is skipped."""
    labels_dense_dir, sparse_dir, out_dir = Path(labels_dense_dir), Path(sparse_dir), Path(out_dir)
    days = list(days)
    sizes = [_rows(labels_dense_dir / data.LABELS_FILE.format(day=d)) for d in days]
    bounds = np.cumsum([0, *sizes])
    todo = {d for d in days if not all(p.exists() for p in _day_files(out_dir, d))}
    progress = Progress("shuffle", 2 * sum(sizes))
    if not todo:
        for d, rows in zip(days, sizes):
            progress.skip(f"day_{d}", 2 * rows)
        return
    buckets = Path(work_dir or out_dir) / "shuffle_buckets"
    complete = buckets / "complete"
    if not complete.exists() or not all((buckets / f"day_{d}.bin").exists() for d in todo):
        shutil.rmtree(buckets, ignore_errors=True)
        buckets.mkdir(parents=True)
        dest = _shuffle_destinations(int(bounds[-1]), seed)
        files = {d: open(buckets / f"day_{d}.bin", "wb") for d in todo}
        for i, d in enumerate(days):
            labels = np.load(labels_dense_dir / data.LABELS_FILE.format(day=d), mmap_mode="r")
            dense = np.load(labels_dense_dir / data.DENSE_FILE.format(day=d), mmap_mode="r")
            sparse = np.load(sparse_dir / data.ONE_HOT_FILE.format(day=d), mmap_mode="r")
            for start in range(0, sizes[i], COPY_ROWS):
                stop = min(start + COPY_ROWS, sizes[i])
                to = dest[bounds[i] + start:bounds[i] + stop].astype(np.int64)
                to_day = np.searchsorted(bounds, to, side="right") - 1
                order = np.argsort(to_day, kind="stable")
                records = np.empty(stop - start, _RECORD)
                records["row"] = (to - bounds[to_day])
                records["label"] = labels[start:stop].reshape(-1, 1).astype(np.float32).astype(np.int32)
                records["dense"] = dense[start:stop]
                records["sparse"] = sparse[start:stop].astype(np.float32).astype(np.int32)
                records, cuts = records[order], np.searchsorted(to_day[order], np.arange(len(days) + 1))
                for t, target in enumerate(days):
                    if target in files and cuts[t] < cuts[t + 1]:
                        files[target].write(records[cuts[t]:cuts[t + 1]].tobytes())
            progress.advance(f"day_{d} into per-day buckets", sizes[i])
        for f in files.values():
            f.close()
        complete.touch()
    else:
        progress.total -= sum(sizes)
    for d, rows in zip(days, sizes):
        if d not in todo:
            progress.skip(f"day_{d}", rows)
            continue
        bucket = np.memmap(buckets / f"day_{d}.bin", dtype=_RECORD, mode="r")
        if len(bucket) != rows:
            raise PreprocessError(f"{buckets / f'day_{d}.bin'}: {len(bucket)} rows, expected {rows}; "
                                  f"delete {buckets} and rerun")
        paths = _day_files(out_dir, d)
        out = {paths[0]: _new_npy(paths[0], np.int32, (rows, 1)),
               paths[1]: _new_npy(paths[1], np.float32, (rows, NUM_DENSE)),
               paths[2]: _new_npy(paths[2], np.int32, (rows, NUM_SPARSE))}
        for start in range(0, rows, COPY_ROWS):
            chunk = np.asarray(bucket[start:start + COPY_ROWS])
            for (path, array), field in zip(out.items(), ("label", "dense", "sparse")):
                array[chunk["row"]] = chunk[field]
        del bucket
        _commit(out)
        (buckets / f"day_{d}.bin").unlink()
        progress.advance(f"day_{d} written", rows)
    shutil.rmtree(buckets)


# ---- step 4: the multi-hot dataset (materialize_synthetic_multihot_dataset.py) ----

def multi_hot_tables(table_rows: Sequence[int], hotness: Sequence[int], seed: int = MULTI_HOT_SEED,
                     cache_dir: Path | None = None, draw_values: int = DRAW_VALUES) -> list[np.ndarray]:
    """The reference's one-hot -> multi-hot lookup tables, int32 [rows_j, hotness_j] (multi_hot.py).

    One legacy RandomState(seed) stream, tables in feature order, each drawn in chunks of whole rows: the
    same values as the reference's one `randint(0, rows, size=(rows, hotness - 1))` per table. With
    `cache_dir`, written there as .npy files (memory-mapped) and reused by a rerun."""
    folder = None
    if cache_dir is not None:
        key = hashlib.sha1(json.dumps([list(table_rows), list(hotness), seed]).encode()).hexdigest()[:12]
        folder = Path(cache_dir) / f"multi_hot_tables_{key}"
        paths = [folder / f"table_{j}.npy" for j in range(len(table_rows))]
        if (folder / "complete").exists():
            return [np.load(p, mmap_mode="r") for p in paths]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    tables = []
    for j, (rows, h) in enumerate(zip(table_rows, hotness)):
        table = np.empty((rows, h), np.int32) if folder is None else _new_npy(paths[j], np.int32, (rows, h))
        step = max(1, draw_values // max(h - 1, 1))
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            table[start:stop, 0] = np.arange(start, stop)
            table[start:stop, 1:] = rng.randint(0, rows, size=(stop - start, h - 1))
        tables.append(table)
    if folder is None:
        return tables
    _commit(dict(zip(paths, tables)))
    (folder / "complete").touch()
    return [np.load(p, mmap_mode="r") for p in paths]


def write_multi_hot_day(one_hot_path: Path, out_path: Path, tables: Sequence[np.ndarray],
                        table_rows: Sequence[int]) -> None:
    """day_{i}_sparse_multi_hot.npz from day_{i}_sparse.npy: member j = table_j[ids[:, j] % rows_j], int32.

    The bytes of `np.savez` (an uncompressed zip of .npy members), written member by member in chunks."""
    ids = np.load(one_hot_path, mmap_mode="r")
    rows = len(ids)
    with zipfile.ZipFile(_tmp(out_path), "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for j, (table, table_size) in enumerate(zip(tables, table_rows)):
            column = np.ascontiguousarray(ids[:, j]) % table_size
            with archive.open(f"{j}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(
                    np.dtype(np.int32)), "fortran_order": False, "shape": (rows, table.shape[1])})
                for start in range(0, rows, COPY_ROWS):
                    member.write(np.ascontiguousarray(table[column[start:start + COPY_ROWS]], np.int32).tobytes())
    os.replace(_tmp(out_path), out_path)


# ---- the whole `tsv` command ----

def _check_manifest(path: Path, manifest: dict, write: bool = False) -> None:
    """Outputs and intermediate files of one set of days and parameters only: a rerun must match them."""
    if path.exists():
        found = json.loads(path.read_text())
        for key, value in manifest.items():
            if found.get(key) != value:
                raise PreprocessError(f"{path}: left by a run with {key}={found.get(key)}, this one has {key}="
                                      f"{value}; use another output (or work) folder, or delete it")
    elif write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1) + "\n")


def _remove_work(work: Path) -> None:
    """What this command left in the work folder, and the folder if that leaves it empty."""
    for path in [work / "tsv_to_npys", work / "contiguous", work / "shuffle_buckets",
                 *work.glob("multi_hot_tables_*")]:
        shutil.rmtree(path, ignore_errors=True)
    (work / MANIFEST).unlink(missing_ok=True)
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()


def tsv_to_numpy(raw_dir: Path, out_dir: Path, days: Sequence[int], table_rows: Sequence[int] = TABLE_ROWS,
                 hotness: Sequence[int] = HOTNESS, *, eval_day: int = RULES.eval_day, work_dir: Path | None = None,
                 piece_rows: int = PIECE_ROWS, keep_work: bool = False) -> None:
    """Raw Criteo days -> the reference's dataset in `out_dir` (see the module docstring)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    days = sorted(set(days))
    work = Path(work_dir) if work_dir is not None else out_dir / WORK_DIR
    step1, step2 = work / "tsv_to_npys", work / "contiguous"
    multi_hot = {d: out_dir / data.MULTI_HOT_FILE.format(day=d) for d in days}
    train_days = [d for d in days if d != eval_day]
    manifest = {"days": days, "eval_day": eval_day if eval_day in days else None, "table_rows": list(table_rows),
                "hotness": list(hotness), "frequency_threshold": FREQUENCY_THRESHOLD, "shuffle_seed": SHUFFLE_SEED,
                "multi_hot_seed": MULTI_HOT_SEED, "torchrec": importlib.metadata.version("torchrec")}
    _check_manifest(out_dir / MANIFEST, manifest)
    if not all(p.exists() for d in days for p in _day_files(out_dir, d)):
        _check_manifest(work / MANIFEST, manifest)
        todo1 = {}
        columns = [j for j in range(NUM_SPARSE) if not _column_done(step2, j, days)]
        for d in days:  # step 1's outputs: dense, labels and the hex columns that step 2 has yet to number
            if not all(p.exists() for p in [step1 / data.DENSE_FILE.format(day=d),
                                             step1 / data.LABELS_FILE.format(day=d),
                                             *(_column_file(step1, j, d) for j in columns)]):
                todo1[d] = columns
        for d in todo1:
            if not (raw_dir / f"day_{d}").is_file():
                raise PreprocessError(f"{raw_dir / f'day_{d}'}: missing; expected Criteo's raw day {d}, "
                                      f"uncompressed, named day_{d} (no .gz or .tsv suffix)")
        if todo1 and importlib.util.find_spec("iopath") is None:
            raise PreprocessError("iopath is not installed; TorchRec's tsv_to_npys needs it "
                                  "(pip install iopath==0.1.10, in the `dlrm` extra)")
        _check_manifest(out_dir / MANIFEST, manifest, write=True)
        _check_manifest(work / MANIFEST, manifest, write=True)
        progress = Progress("tsv_to_npys", sum((raw_dir / f"day_{d}").stat().st_size for d in todo1))
        transform = torchrec_dense_transform(step1) if todo1 else ""
        if todo1:
            print(f"[tsv_to_npys] torchrec {manifest['torchrec']} writes dense values as {transform}", flush=True)
        for d in days:
            if d in todo1:
                _raw_day(raw_dir / f"day_{d}", d, step1, todo1[d], piece_rows, transform, progress)
            else:
                progress.skip(f"day_{d}")
        _contiguous(step1, step2, days)
        shuffle_days(step1, step2, out_dir, train_days, SHUFFLE_SEED, work)
        if eval_day in days:  # copied unshuffled, as BinaryCriteoUtils.shuffle copies the last day
            for source, target in zip(_day_files(step1, eval_day)[:2] + _day_files(step2, eval_day)[2:],
                                      _day_files(out_dir, eval_day)):
                if not target.exists():
                    shutil.copyfile(source, _tmp(target))
                    os.replace(_tmp(target), target)
            print(f"[shuffle] day_{eval_day}: copied unshuffled", flush=True)
    todo4 = [d for d in days if not multi_hot[d].exists()]
    progress = Progress("multi-hot", sum(_rows(out_dir / data.LABELS_FILE.format(day=d)) for d in todo4))
    tables = multi_hot_tables(table_rows, hotness, MULTI_HOT_SEED, cache_dir=work) if todo4 else []
    for d in days:
        if d not in todo4:
            progress.skip(f"day_{d}")
            continue
        write_multi_hot_day(out_dir / data.ONE_HOT_FILE.format(day=d), multi_hot[d], tables, table_rows)
        progress.advance(f"{multi_hot[d]}", _rows(out_dir / data.LABELS_FILE.format(day=d)))
    del tables
    if not keep_work:
        _remove_work(work)
    print(f"{out_dir}: days {','.join(map(str, days))} complete", flush=True)


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
    tsv = sub.add_parser("tsv", help="raw Criteo TSV days -> the reference's numpy dataset")
    tsv.add_argument("raw_dir", type=Path)
    tsv.add_argument("out_dir", type=Path)
    tsv.add_argument("--days", type=parse_days, default=list(range(24)), help="e.g. 0-23 or 0,23")
    tsv.add_argument("--eval-day", type=int, default=RULES.eval_day, help="the day left unshuffled (23)")
    tsv.add_argument("--model-size", choices=["full", "debug"], default="full",
                     help="whose table sizes cap the multi-hot ids (debug: the CPU model's)")
    tsv.add_argument("--work-dir", type=Path, default=None, help=f"intermediate files (OUT_DIR/{WORK_DIR})")
    tsv.add_argument("--piece-rows", type=int, default=PIECE_ROWS, help="raw lines per tsv_to_npys call")
    tsv.add_argument("--keep-work", action="store_true", help="keep the work folder at the end")
    binary = sub.add_parser("binary", help="numpy layout -> NVIDIA's train_data.bin / val_data.bin")
    binary.add_argument("numpy_dir", type=Path)
    binary.add_argument("out_dir", type=Path)
    binary.add_argument("--model-size", choices=["full", "debug"], default="full")
    args = parser.parse_args(argv)
    shape = ModelShape.small() if args.model_size == "debug" else ModelShape.full()
    if args.command == "tsv":
        tsv_to_numpy(args.raw_dir, args.out_dir, args.days, shape.table_rows, shape.hotness, eval_day=args.eval_day,
                     work_dir=args.work_dir, piece_rows=args.piece_rows, keep_work=args.keep_work)
    else:
        numpy_to_binary(args.numpy_dir, args.out_dir, shape)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
