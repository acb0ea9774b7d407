"""Criteo 1TB multi-hot data in the reference's numpy layout and NVIDIA's binary layout.

Numpy layout (MLCommons reference, one set per day i = 0..23):
    day_{i}_labels.npy            int32 [N, 1]  (0/1 click)
    day_{i}_dense.npy             float32 [N, 13]  (integer features, TorchRec's log transform)
    day_{i}_sparse_multi_hot.npz  np.savez, keys "0".."25", int32 [N, hotness_j]
Binary layout (NVIDIA's HugeCTR files, no header): `train_data.bin` = days 0-22,
`val_data.bin` = the first 89,137,319 rows of day 23; 912-byte records of
int32 label, float32 x 13 dense, int32 x 214 ids (features in order, each with its hotness).

Training = days 0-22 in order; validation = the first 89,137,319 rows of day 23
(all of it when the day is shorter, as the synthetic one is). Nothing is loaded
whole: `.npy` files and the uncompressed members of the `.npz` are memory-mapped,
and batches are copied out of the maps as they are needed. A file with a wrong
dtype or shape, a truncated or compressed `.npz`, or an id outside its table
fails with `DataError` naming the file and the feature; so do a missing file (or a directory where a file
should be), an empty binary file, one whose record count is not the synthetic marker's, and a label other than
0/1 (ids and labels are checked as each batch is read: a run stops there, aborted).

`dlrm_dcnv2.synthetic` writes a small dataset in the numpy layout (`write_day`).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from torchrec import KeyedJaggedTensor

from common import synthetic
from dlrm_dcnv2.config import RULES
from dlrm_dcnv2.model import ModelShape, feature_names

LABELS_FILE = "day_{day}_labels.npy"
DENSE_FILE = "day_{day}_dense.npy"
ONE_HOT_FILE = "day_{day}_sparse.npy"  # the preprocessing's intermediate; not read for training
MULTI_HOT_FILE = "day_{day}_sparse_multi_hot.npz"
TRAIN_BINARY, EVAL_BINARY = "train_data.bin", "val_data.bin"


class DataError(ValueError):
    """A data file is missing, unreadable or not in the expected layout."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file is not there (or is a directory)."""


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise MissingDataError(f"{path}: missing (a directory is in its place); expected {what}")
    if not path.is_file():
        raise MissingDataError(f"{path}: missing; expected {what}")


@dataclass
class Rows:
    """A contiguous run of samples on the host."""

    labels: np.ndarray  # [n] int32
    dense: np.ndarray  # [n, 13] float32
    sparse: list[np.ndarray]  # per feature [n, hotness_j] int32

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: Sequence["Rows"]) -> "Rows":
        if len(parts) == 1:
            return parts[0]
        return Rows(np.concatenate([p.labels for p in parts]), np.concatenate([p.dense for p in parts]),
                    [np.concatenate([p.sparse[j] for p in parts]) for j in range(len(parts[0].sparse))])


@dataclass
class Batch:
    """One process's share of a step, on the device; rows past `valid` are padding (eval only)."""

    dense: torch.Tensor  # [b, 13] float32
    sparse: KeyedJaggedTensor | list[torch.Tensor]  # 26 features, fixed hotness each (kjt=False: [b, hotness] each)
    labels: torch.Tensor  # [b] float32
    valid: int


def check_ids(rows: Rows, table_rows: Sequence[int], where: str, first_row: int) -> None:
    """Every id must index its table: a wrong dataset or a table-size mismatch is named, not trained on."""
    for j, (ids, rows_j) in enumerate(zip(rows.sparse, table_rows)):
        if ids.size and (ids.min() < 0 or ids.max() >= rows_j):
            bad = np.argwhere((ids < 0) | (ids >= rows_j))[0]
            raise DataError(f"{where}: feature {j} ({feature_names()[j]}) has id {ids[tuple(bad)]} at row "
                            f"{first_row + bad[0]}, outside its table of {rows_j} rows")


def check_labels(labels: np.ndarray, where: str, first_row: int) -> None:
    """A label is a click (1) or not (0)."""
    if labels.size and (labels.min() < 0 or labels.max() > 1):
        bad = int(np.flatnonzero((labels < 0) | (labels > 1))[0])
        raise DataError(f"{where}: label {labels[bad]} at row {first_row + bad}, expected 0 or 1 (a click)")


class Part(Protocol):
    """Rows [0, len) of one file set; `read` checks ids against the tables, and the labels."""

    def __len__(self) -> int: ...
    def read(self, start: int, stop: int) -> Rows: ...


def _load_npy(path: Path, dtype, ndim_shapes: Sequence[tuple]) -> np.ndarray:
    _require_file(path, f"a .npy file of {np.dtype(dtype)} {' or '.join(str(s) for s in ndim_shapes)}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy file ({e}); truncated or corrupt") from e
    if array.dtype != np.dtype(dtype) or not any(_shape_matches(array.shape, s) for s in ndim_shapes):
        raise DataError(f"{path}: expected {np.dtype(dtype)} of shape "
                        f"{' or '.join(str(s) for s in ndim_shapes)}, found {array.dtype} {array.shape}")
    return array


def _shape_matches(shape: tuple, pattern: tuple) -> bool:
    return len(shape) == len(pattern) and all(p is None or p == s for s, p in zip(shape, pattern))


def _npz_member_maps(path: Path, hotness: Sequence[int], rows: int) -> list[np.ndarray]:
    """Memory-map each member "0".."25" of an uncompressed `np.savez` file in place."""
    _require_file(path, f"an uncompressed np.savez of {len(hotness)} int32 members")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a readable .npz ({e}); truncated or corrupt") from e
    maps = []
    with archive, open(path, "rb") as raw:
        size = raw.seek(0, 2)
        for j, h in enumerate(hotness):
            where = f"{path}: feature {j} ({feature_names()[j]}, member '{j}.npy')"
            try:
                info = archive.getinfo(f"{j}.npy")
            except KeyError:
                raise DataError(f"{where} is missing") from None
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"{where} is compressed; write the file with np.savez, not np.savez_compressed")
            # The member's bytes start after its local header (30 bytes + name + extra field).
            raw.seek(info.header_offset + 26)
            name_len, extra_len = np.frombuffer(raw.read(4), dtype="<u2")
            raw.seek(info.header_offset + 30 + int(name_len) + int(extra_len))
            try:
                version = np.lib.format.read_magic(raw)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(raw)
            except ValueError as e:
                raise DataError(f"{where}: bad .npy header ({e}); truncated or corrupt") from e
            if dtype != np.int32 or fortran or shape != (rows, h):
                raise DataError(f"{where}: expected int32 C-order ({rows}, {h}), found "
                                f"{dtype}{' Fortran-order' if fortran else ''} {shape}")
            offset = raw.tell()
            if offset + rows * h * 4 > size:
                raise DataError(f"{where}: file ends {offset + rows * h * 4 - size} bytes early; truncated")
            maps.append(np.memmap(path, dtype=np.int32, mode="r", offset=offset, shape=(rows, h)))
    return maps


class NumpyDay:
    """One day of the reference's numpy layout."""

    def __init__(self, root: Path, day: int, shape: ModelShape):
        root = Path(root)
        self.table_rows = shape.table_rows
        self.labels_path = root / LABELS_FILE.format(day=day)
        self.sparse_path = root / MULTI_HOT_FILE.format(day=day)
        labels = _load_npy(self.labels_path, np.int32, [(None, 1), (None,)])
        self.labels = labels.reshape(-1)
        n = len(self.labels)
        self.dense = _load_npy(root / DENSE_FILE.format(day=day), np.float32, [(n, RULES.num_dense)])
        self.sparse = _npz_member_maps(self.sparse_path, shape.hotness, n)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, start: int, stop: int) -> Rows:
        # copies out of the maps: only this batch's rows are read from disk
        rows = Rows(np.array(self.labels[start:stop]), np.array(self.dense[start:stop]),
                    [np.array(s[start:stop]) for s in self.sparse])
        check_ids(rows, self.table_rows, str(self.sparse_path), start)
        check_labels(rows.labels, str(self.labels_path), start)
        return rows


def record_dtype(hotness: Sequence[int]) -> np.dtype:
    """NVIDIA's raw record: label, 13 dense, the ids of every feature (912 bytes for the benchmark)."""
    return np.dtype([("label", "<i4"), ("dense", "<f4", (RULES.num_dense,)), ("sparse", "<i4", (sum(hotness),))])


class BinaryFile:
    """NVIDIA's `train_data.bin` / `val_data.bin`."""

    def __init__(self, path: Path, shape: ModelShape, rows: int | None = None):
        """`rows`: the records the file must hold, where known (a headerless file cut at a record boundary
        cannot be told from a shorter one otherwise)."""
        self.path, self.table_rows, self.hotness = Path(path), shape.table_rows, shape.hotness
        self.dtype = record_dtype(shape.hotness)
        _require_file(self.path, f"{self.dtype.itemsize}-byte records in NVIDIA's binary layout")
        size = self.path.stat().st_size
        if size == 0:
            raise DataError(f"{self.path}: 0 bytes, expected {self.dtype.itemsize}-byte records; empty")
        if size % self.dtype.itemsize:
            raise DataError(f"{self.path}: {size} bytes is not a whole number of {self.dtype.itemsize}-byte "
                            f"records; truncated or not in the binary layout")
        if rows is not None and size != rows * self.dtype.itemsize:
            raise DataError(f"{self.path}: {size // self.dtype.itemsize} records, expected {rows} (the dataset's "
                            f"{synthetic.MARKER}); truncated or from another dataset")
        self.records = np.memmap(self.path, dtype=self.dtype, mode="r")
        self.bounds = np.cumsum([0, *shape.hotness])

    def __len__(self) -> int:
        return len(self.records)

    def read(self, start: int, stop: int) -> Rows:
        chunk = np.asarray(self.records[start:stop])
        ids = chunk["sparse"]
        rows = Rows(chunk["label"].copy(), chunk["dense"].copy(),
                    [np.ascontiguousarray(ids[:, a:b]) for a, b in zip(self.bounds[:-1], self.bounds[1:])])
        check_ids(rows, self.table_rows, str(self.path), start)
        check_labels(rows.labels, str(self.path), start)
        return rows


class RowSource:
    """The first `limit` rows of parts read back to back (days in order)."""

    def __init__(self, parts: Sequence[Part], limit: int | None = None):
        self.parts = list(parts)
        self.starts = np.cumsum([0, *(len(p) for p in self.parts)])
        self.rows = int(self.starts[-1]) if limit is None else min(limit, int(self.starts[-1]))

    def __len__(self) -> int:
        return self.rows

    def read(self, start: int, stop: int) -> Rows:
        stop = min(stop, self.rows)
        pieces = []
        for part, first in zip(self.parts, self.starts[:-1]):
            lo, hi = max(start, first), min(stop, first + len(part))
            if lo < hi:
                pieces.append(part.read(lo - first, hi - first))
        return Rows.concat(pieces) if pieces else self.parts[0].read(0, 0)


def open_split(root: Path, split: str, data_format: str, shape: ModelShape,
               days: Sequence[int] | None = None) -> RowSource:
    """`train` (days 0-22) or `eval` (first 89,137,319 rows of day 23) in either layout."""
    root = Path(root)
    if split not in ("train", "eval"):
        raise ValueError(f"split {split!r} is not train or eval")
    if data_format == "binary":
        # A synthetic dataset's marker says how many rows each split holds; the binary files must hold them all.
        rows = synthetic.read_marker(root).get(f"{split}_rows") if synthetic.is_synthetic(root) else None
        return RowSource([BinaryFile(root / (TRAIN_BINARY if split == "train" else EVAL_BINARY), shape, rows)],
                         limit=None if split == "train" else RULES.eval_samples)
    if days is None:
        days = RULES.train_days if split == "train" else (RULES.eval_day,)
    return RowSource([NumpyDay(root, d, shape) for d in days],
                     limit=None if split == "train" else RULES.eval_samples)


def to_batch(rows: Rows, hotness: Sequence[int], device: torch.device, pad_to: int | None = None,
             kjt: bool = True) -> Batch:
    """Tensors on `device`; with `pad_to`, zero rows are appended (their labels are never scored). The ids as
    one TorchRec KeyedJaggedTensor, or with `kjt=False` one [rows, hotness] tensor per table
    (`model.TorchEmbeddingBags`)."""
    valid = len(rows)
    if pad_to is not None and pad_to > valid:
        pad = pad_to - valid
        rows = Rows(np.concatenate([rows.labels, np.zeros(pad, np.int32)]),
                    np.concatenate([rows.dense, np.zeros((pad, RULES.num_dense), np.float32)]),
                    [np.concatenate([s, np.zeros((pad, s.shape[1]), np.int32)]) for s in rows.sparse])
    n = len(rows)
    if kjt:
        from torchrec import KeyedJaggedTensor

        # KeyedJaggedTensor layout: all of feature 0's ids, then feature 1's, ...
        values = torch.from_numpy(np.concatenate([s.reshape(-1) for s in rows.sparse]).astype(np.int64))
        lengths = torch.from_numpy(np.repeat(np.asarray(hotness, dtype=np.int32), n))
        sparse = KeyedJaggedTensor(keys=feature_names(len(hotness)), values=values, lengths=lengths).to(
            device, non_blocking=True)
    else:
        sparse = [torch.from_numpy(s.astype(np.int64)).to(device, non_blocking=True) for s in rows.sparse]
    return Batch(dense=torch.from_numpy(np.ascontiguousarray(rows.dense)).to(device, non_blocking=True),
                 sparse=sparse,
                 labels=torch.from_numpy(rows.labels.astype(np.float32)).to(device, non_blocking=True),
                 valid=valid)


def train_batches(source: RowSource, global_batch: int, rank: int, world_size: int, hotness: Sequence[int],
                  device: torch.device, first_step: int = 0, kjt: bool = True) -> Iterator[Batch]:
    """This rank's slice of every whole global batch, from step `first_step` on (the last partial one is dropped)."""
    local = global_batch // world_size
    for step in range(first_step, len(source) // global_batch):
        start = step * global_batch + rank * local
        yield to_batch(source.read(start, start + local), hotness, device, kjt=kjt)


def eval_batches(source: RowSource, global_batch: int, rank: int, world_size: int, hotness: Sequence[int],
                 device: torch.device) -> Iterator[Batch]:
    """Every validation row exactly once over all ranks; every rank runs the same number of equal-size
    batches (sharded embeddings need all ranks in each step), the short ones padded."""
    local = -(-global_batch // world_size)
    for start in range(0, len(source), global_batch):
        lo = min(start + rank * local, start + global_batch, len(source))
        hi = min(lo + local, start + global_batch, len(source))
        yield to_batch(source.read(lo, hi), hotness, device, pad_to=local)


def write_day(root: Path, day: int, rows: Rows) -> None:
    """Day `day` in the reference's numpy layout (labels, dense, multi-hot npz)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / LABELS_FILE.format(day=day), rows.labels.reshape(-1, 1))
    np.save(root / DENSE_FILE.format(day=day), rows.dense)
    np.savez(root / MULTI_HOT_FILE.format(day=day), **{str(j): s for j, s in enumerate(rows.sparse)})
