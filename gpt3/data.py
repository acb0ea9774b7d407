"""Megatron's mmap indexed dataset (`.bin`/`.idx`) and GPT training samples built from it.

`.idx` layout (little endian), as Megatron-LM writes it:
    magic b"MMIDIDX\\x00\\x00" (9 bytes), version <Q = 1, dtype code <B,
    sequence count <Q, document-index length <Q         (34-byte header)
    sizes int32[count], pointers int64[count] (byte offsets into .bin),
    doc_idx int64[document-index length] (0, then the end of every document)
`.bin` is the tokens of all sequences back to back in that dtype. Dtype codes:
1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16.
A file that is missing, too short, has a bad magic/version/dtype (tokens are
integers), or pointers that do not match the sizes fails with `DataError`
naming the file and the field; given the vocabulary size, so does a token id
outside it, found as the tokens are read (the validation file's all at open,
the training files' sample by sample: a run stops there, aborted).

GPT samples (after Megatron's `GPTDataset`): each epoch's document order is a
seeded permutation; the documents of successive epochs are concatenated into
one token stream, cut into samples of seq_len + 1 tokens that overlap by one
(inputs and shifted targets), and the samples are shuffled with the seed.
`blend` interleaves datasets by weight the way Megatron's `BlendableDataset`
does: each next sample comes from the dataset furthest behind its share.
"""
from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gpt3.model import IGNORE

TRAIN_FILES = ("c4_en_6_c4_spm_text_document", "c4_en_7_c4_spm_text_document")  # blended 0.5/0.5
VALID_FILE = "c4_en_validation_subset_c4_spm_text_document"
MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # 34 bytes
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
          8: np.uint16}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


class DataError(ValueError):
    """A data file is missing, truncated or not in the expected layout."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file is not there (or a directory is in its place)."""


def token_dtype(vocab_size: int) -> np.dtype:
    """Megatron's choice: uint16 when the vocabulary fits, else int32."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def paths(prefix: Path) -> tuple[Path, Path]:
    """PREFIX.bin and PREFIX.idx (the prefix may itself contain dots)."""
    return Path(f"{prefix}.bin"), Path(f"{prefix}.idx")


def write_indexed(prefix: Path, documents: list[np.ndarray], dtype: np.dtype) -> None:
    """Write documents (one sequence each, as Megatron's preprocessing does) to prefix.bin/.idx."""
    bin_path, idx_path = paths(prefix)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype)
    sizes = np.array([len(d) for d in documents], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes.astype(np.int64) * dtype.itemsize)[:-1]]).astype(np.int64)
    doc_idx = np.arange(len(documents) + 1, dtype=np.int64)
    with open(bin_path, "wb") as f:
        for d in documents:
            f.write(np.asarray(d, dtype=dtype).tobytes())
    with open(idx_path, "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, CODES[dtype], len(sizes), len(doc_idx)))
        f.write(sizes.tobytes())
        f.write(pointers[: len(sizes)].tobytes())
        f.write(doc_idx.tobytes())


class IndexedDataset:
    """Read-only view of prefix.bin/.idx; `self[i]` is sequence i's tokens (memory-mapped). With `vocab_size`,
    `check_ids` refuses token ids outside the vocabulary."""

    def __init__(self, prefix: Path, vocab_size: int | None = None):
        self.bin_path, self.idx_path = paths(prefix)
        self.vocab_size = vocab_size
        for path in (self.idx_path, self.bin_path):
            if path.is_dir():
                raise MissingDataError(f"{path} is a directory, expected a file of Megatron's .bin/.idx pair")
            if not path.is_file():
                raise MissingDataError(f"{path} does not exist (expected a file of Megatron's .bin/.idx pair)")
        raw = self.idx_path.read_bytes()
        if len(raw) < HEADER.size:
            raise DataError(f"{self.idx_path}: {len(raw)} bytes, shorter than the {HEADER.size}-byte header")
        magic, version, code, count, doc_count = HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise DataError(f"{self.idx_path}: magic {magic!r} is not {MAGIC!r} (not a Megatron mmap index)")
        if version != VERSION:
            raise DataError(f"{self.idx_path}: version {version}, expected {VERSION}")
        if code not in DTYPES:
            raise DataError(f"{self.idx_path}: dtype code {code} is not one of {sorted(DTYPES)}")
        self.dtype = np.dtype(DTYPES[code])
        if self.dtype.kind not in "iu":
            raise DataError(f"{self.idx_path}: dtype code {code} ({self.dtype}), expected an integer token dtype")
        expected = HEADER.size + 12 * count + 8 * doc_count
        if len(raw) != expected:
            raise DataError(f"{self.idx_path}: {len(raw)} bytes, but the header's {count} sequences and "
                            f"{doc_count} doc_idx entries need {expected} (truncated or mismatched)")
        self.sizes = np.frombuffer(raw, np.int32, count, HEADER.size)
        self.pointers = np.frombuffer(raw, np.int64, count, HEADER.size + 4 * count)
        self.doc_idx = np.frombuffer(raw, np.int64, doc_count, HEADER.size + 12 * count)
        self._check()
        self.tokens = np.memmap(self.bin_path, dtype=self.dtype, mode="r") if count else np.zeros(0, self.dtype)

    def _check(self) -> None:
        if (self.sizes < 0).any():
            raise DataError(f"{self.idx_path}: field 'sizes' has negative sequence lengths")
        expected = np.concatenate([[0], np.cumsum(self.sizes.astype(np.int64))[:-1]]) * self.dtype.itemsize
        if len(self.sizes) and not np.array_equal(self.pointers, expected):
            other = [np.dtype(t).itemsize for t in DTYPES.values()
                     if np.array_equal(self.pointers, expected // self.dtype.itemsize * np.dtype(t).itemsize)]
            if other:
                raise DataError(f"{self.idx_path}: field 'pointers' counts {other[0]}-byte tokens, but the dtype "
                                f"code says {self.dtype} ({self.dtype.itemsize} bytes); the dtype code is wrong")
            bad = int(np.flatnonzero(self.pointers != expected)[0])
            raise DataError(f"{self.idx_path}: field 'pointers' entry {bad} is {self.pointers[bad]}, "
                            f"expected {expected[bad]} from the sizes")
        if len(self.doc_idx) == 0 or self.doc_idx[0] != 0 or self.doc_idx[-1] != len(self.sizes) \
                or (np.diff(self.doc_idx) < 0).any():
            raise DataError(f"{self.idx_path}: field 'doc_idx' must rise from 0 to the sequence count "
                            f"{len(self.sizes)}")
        need = self.num_tokens * self.dtype.itemsize
        have = self.bin_path.stat().st_size
        if have != need:
            raise DataError(f"{self.bin_path}: {have} bytes, but {self.idx_path} describes {need} "
                            f"(truncated, or .bin and .idx do not belong together)")

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def num_tokens(self) -> int:
        """The tokens of all sequences (the validation file's are what eval_samples logs)."""
        return int(self.sizes.astype(np.int64).sum())

    def __getitem__(self, i: int) -> np.ndarray:
        start = self.pointers[i] // self.dtype.itemsize
        return self.tokens[start: start + self.sizes[i]]

    def check_ids(self, tokens: np.ndarray, sequence: int, offset: int = 0) -> None:
        """`tokens` (sequence `sequence`'s from `offset` on) must be ids of the vocabulary, where it is known."""
        if self.vocab_size is None or not len(tokens):
            return
        bad = np.flatnonzero((tokens < 0) | (tokens >= self.vocab_size))
        if len(bad):
            raise DataError(f"{self.bin_path}: sequence {sequence} has token id {tokens[bad[0]]} at position "
                            f"{offset + bad[0]}, outside the vocabulary of {self.vocab_size} ids")


def open_c4(root: Path, vocab_size: int) -> tuple[list[IndexedDataset], IndexedDataset]:
    """The training files and the validation file under `root` (DATADIR/preproc_data), headers and sizes
    checked; token ids are checked against the vocabulary as they are read."""
    return [IndexedDataset(root / name, vocab_size) for name in TRAIN_FILES], \
        IndexedDataset(root / VALID_FILE, vocab_size)


@dataclass(frozen=True)
class SampleIndex:
    """Which tokens make GPT sample k: the token stream of `doc_order`, cut at k * seq_len."""

    doc_order: np.ndarray  # document ids, epoch after epoch
    starts: np.ndarray  # cumulative token offset of each entry of doc_order (len + 1)
    shuffle: np.ndarray  # sample k of the dataset is stream sample shuffle[k]
    seq_len: int


def build_samples(sizes: np.ndarray, num_samples: int, seq_len: int, seed: int) -> SampleIndex:
    """Enough epochs of seeded document permutations for num_samples samples of seq_len + 1 tokens."""
    tokens_per_epoch = int(sizes.sum())
    if tokens_per_epoch <= 0:
        raise DataError("the dataset holds no tokens")
    epochs = -(-(num_samples * seq_len + 1) // tokens_per_epoch)
    rng = np.random.RandomState(seed)
    doc_order = np.concatenate([rng.permutation(len(sizes)) for _ in range(epochs)])
    starts = np.concatenate([[0], np.cumsum(sizes[doc_order].astype(np.int64))])
    shuffle = rng.permutation(num_samples)
    return SampleIndex(doc_order, starts, shuffle, seq_len)


def gpt_sample(ds: IndexedDataset, index: SampleIndex, k: int) -> np.ndarray:
    """Sample k: seq_len + 1 consecutive tokens of the shuffled document stream."""
    first = int(index.shuffle[k]) * index.seq_len
    last = first + index.seq_len + 1
    d = int(np.searchsorted(index.starts, first, side="right")) - 1
    parts = []
    while first < last:
        doc = index.doc_order[d]
        offset = first - index.starts[d]
        take = min(last - first, int(index.starts[d + 1] - first))
        parts.append(np.asarray(ds[doc][offset: offset + take]))
        ds.check_ids(parts[-1], int(doc), int(offset))
        first += take
        d += 1
    return np.concatenate(parts).astype(np.int64)


def validation_windows(ds: IndexedDataset, seq_len: int) -> np.ndarray:
    """Every full seq_len + 1-token window (overlapping by one) of one in-order pass over the documents."""
    for i in range(len(ds)):
        ds.check_ids(np.asarray(ds[i]), i)
    tokens = np.concatenate([np.asarray(ds[i]) for i in range(len(ds))]).astype(np.int64)
    count = (len(tokens) - 1) // seq_len
    return np.stack([tokens[k * seq_len: k * seq_len + seq_len + 1] for k in range(count)]) if count \
        else np.zeros((0, seq_len + 1), np.int64)


def blend(weights: list[float], num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset, sample within dataset) for each blended sample, as Megatron's BlendableDataset: sample i comes
    from the dataset furthest behind its share, weight x max(i, 1) - samples taken (first on ties).

    Equal weights (GPT-3's 0.5/0.5) make that a round robin — every share is the same float, so the dataset
    with the fewest samples, the lowest first, is the furthest behind — computed for all samples at once; other
    weights run the greedy loop on Python floats (docs/perf/gpt3_blend.md times both)."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    if np.all(weights == weights[0]):
        samples = np.arange(num_samples, dtype=np.int64)
        return samples % len(weights), samples // len(weights)
    return _blend_greedy([float(w) for w in weights], num_samples)


def _blend_greedy(weights: list[float], num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    which = np.empty(num_samples, dtype=np.int64)
    within = np.empty(num_samples, dtype=np.int64)
    counts = [0] * len(weights)
    for i in range(num_samples):
        m = max(i, 1)
        best, d = weights[0] * m - counts[0], 0
        for k in range(1, len(weights)):
            behind = weights[k] * m - counts[k]
            if behind > best:
                best, d = behind, k
        which[i], within[i] = d, counts[d]
        counts[d] += 1
    return which, within


class TrainSamples:
    """Global training sample g: a 0.5/0.5 blend of the two training files' shuffled GPT samples."""

    def __init__(self, files: list[IndexedDataset], num_samples: int, seq_len: int, seed: int):
        self.files = files
        self.which, self.within = blend([0.5] * len(files), num_samples)
        self.index = [build_samples(ds.sizes, int((self.which == i).sum()) + 1, seq_len, seed + i)
                      for i, ds in enumerate(files)]

    def batch(self, ids: range) -> torch.Tensor:
        return torch.from_numpy(np.stack([gpt_sample(self.files[self.which[g]], self.index[self.which[g]],
                                                     int(self.within[g])) for g in ids]))


def train_batches(samples: TrainSamples, global_batch: int, minibs: int, dp_rank: int,
                  micro_batch: int | None = None) -> Iterator[torch.Tensor]:
    """This data-parallel rank's MINIBS sequences of every step (tensor- and pipeline-parallel ranks share
    them), whole or in micro-batches of `micro_batch`; [rows, seq_len + 1] token ids."""
    for step in itertools.count():
        first = step * global_batch + dp_rank * minibs
        tokens = samples.batch(range(first, first + minibs))
        if micro_batch is None:
            yield tokens
        else:
            yield from tokens.split(micro_batch)


def validation_batches(ds: IndexedDataset, seq_len: int, rank: int, world: int, batch: int):
    """The validation windows split by data-parallel rank, in (inputs, targets) batches of `batch`; and the
    number of windows.

    Every rank gets the same number of full batches (FSDP2 and the pipeline
    schedule need the same calls on every rank); the padding rows have
    targets IGNORE and count for nothing.
    """
    windows = validation_windows(ds, seq_len)
    if len(windows) == 0:
        raise DataError(f"{ds.bin_path}: fewer than {seq_len + 1} validation tokens")
    mine = torch.from_numpy(windows[rank::world]).long()
    per_rank = -(-len(windows) // world)
    rows = -(-per_rank // batch) * batch
    inputs = torch.zeros(rows, seq_len, dtype=torch.long)
    targets = torch.full((rows, seq_len), IGNORE, dtype=torch.long)
    inputs[:len(mine)], targets[:len(mine)] = mine[:, :-1], mine[:, 1:]
    return list(zip(inputs.split(batch), targets.split(batch))), len(windows)
