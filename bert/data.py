"""BERT phase-2 data in NVIDIA's HDF5 layouts: readers, the training stream, and writers.

Variable-length files (NVIDIA's unpacked training shards
`part_XXXXX_of_04320.hdf5` and the eval file `part_eval_10k.hdf5`), one
sequence per row, no padding, no input_mask:
    input_ids vlen int16, segment_ids vlen int8, masked_lm_positions vlen int16,
    masked_lm_ids vlen int16, next_sentence_labels int8 [N]
Packed files (`packed_data/part_XXXXX`, no extension), 1-3 sequences per row:
    input_ids vlen int16, segment_ids vlen int8, masked_lm_positions vlen int16
    (offsets into the row), masked_lm_ids vlen int16, packed_input_len vlen int16,
    packed_masked_lm_len vlen int16, next_sentence_labels vlen int8 (one per sequence)

Both read into `Rows` (a packed row of one sequence is an unpacked row). A shard
that cannot be read, lacks a key, has a wrong dtype or shape, inconsistent
lengths, or ids outside the vocabulary (segment and next-sentence labels
outside 0/1) fails with `DataError` naming the file and the dataset key. The
shards a rank will read are checked when its loader is built, before
`run_start`, from their HDF5 headers alone (`check_shard`: HDF5 refuses a
truncated file when it opens it; keys, dtypes, shapes and row counts are
metadata); their values (lengths, id ranges) are checked as each shard is
read, mid-run. The eval file is read, and so checked whole, before `run_start`.

`bert.packing` packs variable-length shards; `bert.synthetic` writes a
synthetic corpus and phase-1 checkpoint in these layouts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch

EVAL_FILE = "eval_varlength/part_eval_10k.hdf5"
PACKED_DIR = "packed_data"
VARLENGTH_DIR = "varlength"
SHARD_PREFIX = "part_"  # NVIDIA's shard names: part_XXXXX_of_04320.hdf5, packed_data/part_XXXXX
PHASE1_DIR = "phase1"

# key -> (numpy dtype, variable length?)
VARLENGTH_LAYOUT = {
    "input_ids": (np.int16, True), "segment_ids": (np.int8, True),
    "masked_lm_positions": (np.int16, True), "masked_lm_ids": (np.int16, True),
    "next_sentence_labels": (np.int8, False),
}
PACKED_LAYOUT = {
    "input_ids": (np.int16, True), "segment_ids": (np.int8, True),
    "masked_lm_positions": (np.int16, True), "masked_lm_ids": (np.int16, True),
    "packed_input_len": (np.int16, True), "packed_masked_lm_len": (np.int16, True),
    "next_sentence_labels": (np.int8, True),
}


class DataError(ValueError):
    """A data file is missing, unreadable or not in the expected layout."""


@dataclass
class Rows:
    """Rows of one shard; every field is a list of 1-D int arrays (one per row)."""

    input_ids: list
    segment_ids: list
    masked_positions: list  # offsets into the row
    masked_ids: list
    seq_lens: list  # 1-3 sequence lengths per row
    masked_lens: list
    nsp_labels: list  # one per sequence

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, index: Sequence[int]) -> "Rows":
        return Rows(*([getattr(self, f)[i] for i in index] for f in self.__dataclass_fields__))

    @property
    def num_sequences(self) -> int:
        return sum(len(s) for s in self.seq_lens)


def _open(path: Path) -> h5py.File:
    if path.is_dir():
        raise DataError(f"{path}: a directory, expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        found = f"{path.stat().st_size} bytes" if path.is_file() else "no file"
        raise DataError(f"{path}: not a readable HDF5 file ({e}); found {found}, expected a complete HDF5 file "
                        f"(truncated, corrupt or missing)") from e


def _layout(f: h5py.File) -> dict:
    return PACKED_LAYOUT if "packed_input_len" in f else VARLENGTH_LAYOUT


def _describe(ds: h5py.Dataset) -> str:
    stored = h5py.check_vlen_dtype(ds.dtype)
    return f"{ds.ndim}-D {'variable-length ' if stored is not None else ''}{stored or ds.dtype} of shape {ds.shape}"


def _check_key(f: h5py.File, path: Path, key: str, dtype, vlen: bool) -> h5py.Dataset:
    """The dataset `key`, its dtype and shape checked (metadata: nothing is read)."""
    if key not in f:
        raise DataError(f"{path}: dataset '{key}' is missing (the file holds {sorted(f.keys())})")
    ds = f[key]
    stored = h5py.check_vlen_dtype(ds.dtype)
    if (stored is not None) != vlen or (stored or ds.dtype) != np.dtype(dtype) or ds.ndim != 1:
        raise DataError(f"{path}: dataset '{key}' holds {_describe(ds)}, expected 1-D "
                        f"{'variable-length ' if vlen else ''}{np.dtype(dtype)} (one entry per row)")
    return ds


def _check_row_counts(path: Path, counts: dict[str, int]) -> None:
    n = counts["input_ids"]
    for key, count in counts.items():
        if count != n:
            raise DataError(f"{path}: dataset '{key}' has {count} rows, expected as many as 'input_ids' ({n})")


def check_shard(path: Path) -> int:
    """Check a packed or variable-length shard from its HDF5 header alone (readable and not truncated, every key
    of its layout with the right dtype and shape, as many rows in each); returns its rows."""
    path = Path(path)
    with _open(path) as f:
        counts = {key: _check_key(f, path, key, *spec).shape[0] for key, spec in _layout(f).items()}
    _check_row_counts(path, counts)
    return counts["input_ids"]


def _read_key(f: h5py.File, path: Path, key: str, dtype, vlen: bool) -> np.ndarray:
    ds = _check_key(f, path, key, dtype, vlen)
    try:
        return ds[:]
    except OSError as e:
        raise DataError(f"{path}: dataset '{key}' cannot be read ({e}); the file is truncated or corrupt") from e


def _lengths(values) -> np.ndarray:
    return np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))


def read_shard(path: Path, max_seq_len: int, max_predictions: int, vocab_size: int | None = None) -> Rows:
    """Read a packed or variable-length shard (told apart by `packed_input_len`) and check it; token ids are
    checked against `vocab_size` when given (otherwise only that they are not negative)."""
    path = Path(path)
    with _open(path) as f:
        layout = _layout(f)
        packed = layout is PACKED_LAYOUT
        data = {key: _read_key(f, path, key, *spec) for key, spec in layout.items()}
    _check_row_counts(path, {key: len(values) for key, values in data.items()})
    if packed:
        seq_lens = [v.astype(np.int64) for v in data["packed_input_len"]]
        masked_lens = [v.astype(np.int64) for v in data["packed_masked_lm_len"]]
        nsp = list(data["next_sentence_labels"])
    else:
        seq_lens = [np.array([len(v)]) for v in data["input_ids"]]
        masked_lens = [np.array([len(v)]) for v in data["masked_lm_positions"]]
        nsp = [np.array([v], dtype=np.int8) for v in data["next_sentence_labels"]]
    rows = Rows(list(data["input_ids"]), list(data["segment_ids"]), list(data["masked_lm_positions"]),
                list(data["masked_lm_ids"]), seq_lens, masked_lens, nsp)
    _check_rows(path, rows, max_seq_len, max_predictions, packed, vocab_size)
    return rows


def _first_outside(values: list, limit: int | None) -> tuple[int, int] | None:
    """(row, value) of the first value outside 0..limit-1 (only negative ones when `limit` is None)."""
    if not values:
        return None
    flat = np.concatenate([np.asarray(v).reshape(-1) for v in values])
    bad = (flat < 0) if limit is None else (flat < 0) | (flat >= limit)
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    return int(np.searchsorted(np.cumsum(_lengths(values)), first, side="right")), int(flat[first])


def _check_rows(path: Path, rows: Rows, max_seq_len: int, max_predictions: int, packed: bool,
                vocab_size: int | None = None) -> None:
    tokens = _lengths(rows.input_ids)
    checks = [
        ("segment_ids", _lengths(rows.segment_ids), tokens, "as many entries as input_ids"),
        ("packed_input_len", np.array([s.sum() for s in rows.seq_lens]), tokens, "lengths summing to the row"),
        ("masked_lm_ids", _lengths(rows.masked_ids), _lengths(rows.masked_positions),
         "as many entries as masked_lm_positions"),
        ("packed_masked_lm_len", np.array([m.sum() for m in rows.masked_lens]), _lengths(rows.masked_positions),
         "counts summing to masked_lm_positions"),
        ("next_sentence_labels", _lengths(rows.nsp_labels), _lengths(rows.seq_lens), "one label per sequence"),
        ("packed_masked_lm_len", _lengths(rows.masked_lens), _lengths(rows.seq_lens), "one count per sequence"),
    ]
    for key, got, want, what in checks:
        bad = np.flatnonzero(got != want)
        if bad.size:
            raise DataError(f"{path}: dataset '{key}' row {bad[0]} does not have {what} "
                            f"({got[bad[0]]} vs {want[bad[0]]})")
    too_long = np.flatnonzero(tokens > max_seq_len)
    if too_long.size:
        raise DataError(f"{path}: dataset 'input_ids' row {too_long[0]} has {tokens[too_long[0]]} tokens, "
                        f"more than the maximum sequence length {max_seq_len}")
    per_seq = _lengths(rows.seq_lens)
    if per_seq.size and (per_seq.min() < 1 or per_seq.max() > 3):
        raise DataError(f"{path}: dataset 'packed_input_len' has rows with {per_seq.min()}..{per_seq.max()} "
                        f"sequences; expected 1-3")
    per_seq_preds = np.concatenate(rows.masked_lens) if len(rows) else np.zeros(0)
    if per_seq_preds.size and per_seq_preds.max() > max_predictions:
        key = "packed_masked_lm_len" if packed else "masked_lm_positions"
        raise DataError(f"{path}: dataset '{key}' has a sequence with {per_seq_preds.max()} "
                        f"predictions, more than {max_predictions} per sequence")
    preds = _lengths(rows.masked_positions)
    if preds.size and preds.max() > row_predictions(max_predictions):
        raise DataError(f"{path}: dataset 'masked_lm_positions' row {int(preds.argmax())} has {preds.max()} "
                        f"predictions, more than {row_predictions(max_predictions)} per row")
    for i, (pos, n) in enumerate(zip(rows.masked_positions, tokens)):
        if pos.size and (pos.min() < 0 or pos.max() >= n):
            raise DataError(f"{path}: dataset 'masked_lm_positions' row {i} points outside its {n} tokens")
    vocabulary = "a non-negative token id" if vocab_size is None else f"0..{vocab_size - 1}, the model's vocabulary"
    for key, values, limit, expected in [
        ("input_ids", rows.input_ids, vocab_size, vocabulary),
        ("masked_lm_ids", rows.masked_ids, vocab_size, vocabulary),
        ("segment_ids", rows.segment_ids, 2, "0 or 1 (segment A or B)"),
        ("next_sentence_labels", rows.nsp_labels, 2, "0 or 1 (is-next or random)"),
    ]:
        outside = _first_outside(values, limit)
        if outside:
            raise DataError(f"{path}: dataset '{key}' row {outside[0]} holds {outside[1]}, expected {expected}")


def row_predictions(max_predictions: int) -> int:
    """Masked-LM slots per row: a packed row may carry a few more predictions than one sequence
    (15% of each of its up to 3 sequences, each rounded: at most 0.15 * 512 + 1.5 < 76 + 3)."""
    return max_predictions + 3


def collate(rows: Rows, seq_len: int, max_predictions: int) -> dict[str, torch.Tensor]:
    """Pad rows to [B, seq_len] tokens, [B, row_predictions(max_predictions)] predictions and
    [B, 3] sequences.

    Padding predictions have label -1 and padding sequences NSP label -1
    (ignored by the loss and the accuracy).
    """
    b, slots = len(rows), row_predictions(max_predictions)
    out = {
        "input_ids": np.zeros((b, seq_len), np.int64), "token_type_ids": np.zeros((b, seq_len), np.int64),
        "seq_lens": np.zeros((b, 3), np.int64), "masked_positions": np.zeros((b, slots), np.int64),
        "masked_ids": np.full((b, slots), -1, np.int64), "nsp_labels": np.full((b, 3), -1, np.int64),
    }
    for i in range(b):
        n, m, p = len(rows.input_ids[i]), len(rows.masked_positions[i]), len(rows.seq_lens[i])
        out["input_ids"][i, :n] = rows.input_ids[i]
        out["token_type_ids"][i, :n] = rows.segment_ids[i]
        out["seq_lens"][i, :p] = rows.seq_lens[i]
        out["masked_positions"][i, :m] = rows.masked_positions[i]
        out["masked_ids"][i, :m] = rows.masked_ids[i]
        out["nsp_labels"][i, :p] = rows.nsp_labels[i]
    return {k: torch.from_numpy(v) for k, v in out.items()}


def list_shards(directory: Path) -> list[Path]:
    """Training shards: every regular file in the directory (packed shards have no extension)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"training data directory {directory} does not exist; expected a directory of HDF5 shards")
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    broken = [p for p in entries if p.name.startswith(SHARD_PREFIX) and not p.is_file()]
    if broken:
        raise DataError(f"{broken[0]}: not a regular file (a directory or a broken link), expected an HDF5 shard")
    files = [p for p in entries if p.is_file()]
    if not files:
        raise DataError(f"training data directory {directory} holds no shards")
    return files


def rank_files(files: list[Path], rank: int, world_size: int, num_workers: int) -> list[Path]:
    """The files rank `rank` reads, through its `num_workers` DataLoader workers (0: in-process)."""
    workers = max(num_workers, 1)
    return sorted({unit[0] for worker in range(workers)
                   for unit in _units(files, world_size * workers, rank * workers + worker)})


def _units(files: list[Path], consumers: int, index: int) -> list[tuple[Path, int, int]]:
    """(file, first row, row stride) read by consumer `index` of `consumers`: whole files when
    there are enough to go round, otherwise every file with rows strided across consumers."""
    if len(files) >= consumers:
        return [(f, 0, 1) for f in files[index::consumers]]
    return [(f, index, consumers) for f in files]


class TrainStream(torch.utils.data.IterableDataset):
    """Endless collated training batches for one rank: its shards in a fresh seeded order each
    pass, rows shuffled within a shard. Ranks (and DataLoader workers) read disjoint shards, or
    disjoint rows of every shard when there are fewer shards than readers."""

    def __init__(self, files: list[Path], *, batch_size: int, seq_len: int, max_predictions: int,
                 rank: int, world_size: int, seed: int, vocab_size: int | None = None):
        super().__init__()
        self.files, self.batch_size, self.seq_len = files, batch_size, seq_len
        self.max_predictions, self.rank, self.world_size, self.seed = max_predictions, rank, world_size, seed
        self.vocab_size = vocab_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        reader = self.rank * workers + worker
        units = _units(self.files, self.world_size * workers, reader)
        pending: Rows | None = None
        for epoch in range(10**9):
            rng = np.random.default_rng([self.seed, epoch, reader])
            for u in rng.permutation(len(units)):
                path, first, stride = units[u]
                rows = read_shard(path, self.seq_len, self.max_predictions, self.vocab_size)
                rows = rows.select(range(first, len(rows), stride))
                rows = rows.select(rng.permutation(len(rows)))
                if pending is not None:
                    rows = Rows(*(getattr(pending, f) + getattr(rows, f) for f in Rows.__dataclass_fields__))
                full = len(rows) // self.batch_size * self.batch_size
                for start in range(0, full, self.batch_size):
                    yield collate(rows.select(range(start, start + self.batch_size)), self.seq_len,
                                  self.max_predictions)
                pending = rows.select(range(full, len(rows)))


def build_train_loader(files: list[Path], *, batch_size: int, seq_len: int, max_predictions: int, rank: int,
                       world_size: int, seed: int, num_workers: int, pin_memory: bool, vocab_size: int | None = None):
    """The rank's stream of batches; the shards it will read are checked first (`check_shard`: headers only)."""
    for path in rank_files(files, rank, world_size, num_workers):
        check_shard(path)
    stream = TrainStream(files, batch_size=batch_size, seq_len=seq_len, max_predictions=max_predictions,
                         rank=rank, world_size=world_size, seed=seed, vocab_size=vocab_size)
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                                       persistent_workers=num_workers > 0)


def load_eval_batches(path: Path, *, batch_size: int, seq_len: int, max_predictions: int, rank: int,
                      world_size: int, vocab_size: int | None = None) -> tuple[list[dict[str, torch.Tensor]], int]:
    """This rank's share of the eval file (rows rank::world), collated once and kept in memory.

    Returns the batches and the total number of eval samples across ranks.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"eval file {path} does not exist; expected the variable-length eval HDF5 file")
    rows = read_shard(path, seq_len, max_predictions, vocab_size)
    per_row = _lengths(rows.seq_lens)
    if per_row.size and per_row.max() != 1:
        raise DataError(f"{path}: dataset 'input_ids' holds rows of up to {per_row.max()} sequences (a packed "
                        f"file?), expected one sequence per row in the eval file")
    mine = rows.select(range(rank, len(rows), world_size))
    batches = [collate(mine.select(range(i, min(i + batch_size, len(mine)))), seq_len, max_predictions)
               for i in range(0, len(mine), batch_size)]
    return batches, len(rows)


def _write_vlen(f: h5py.File, key: str, dtype, values: list) -> None:
    column = np.empty(len(values), dtype=object)
    column[:] = [np.asarray(v, dtype=dtype) for v in values]
    f.create_dataset(key, data=column, dtype=h5py.vlen_dtype(np.dtype(dtype)))


def write_varlength(path: Path, sequences: list[dict]) -> None:
    """Write sequences ({input_ids, segment_ids, masked_lm_positions, masked_lm_ids, next_sentence_label})."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, (dtype, vlen) in VARLENGTH_LAYOUT.items():
            if vlen:
                _write_vlen(f, key, dtype, [s[key] for s in sequences])
            else:
                f.create_dataset(key, data=np.array([s["next_sentence_label"] for s in sequences], dtype=dtype))


def write_packed(path: Path, rows: Rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {"input_ids": rows.input_ids, "segment_ids": rows.segment_ids,
               "masked_lm_positions": rows.masked_positions, "masked_lm_ids": rows.masked_ids,
               "packed_input_len": rows.seq_lens, "packed_masked_lm_len": rows.masked_lens,
               "next_sentence_labels": rows.nsp_labels}
    with h5py.File(path, "w") as f:
        for key, (dtype, _) in PACKED_LAYOUT.items():
            _write_vlen(f, key, dtype, columns[key])


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
