"""Bad input, table-driven: corrupted copies of a tiny synthetic C4 and its checkpoint.

The dataset is `gpt3.synthetic.synthesize` at its smallest (8 documents a file, a 1-step checkpoint), not the
`gpt3_synthetic` fixture (its 200-step pre-training is half a minute). Each case corrupts one file of a copy
and must fail naming the file and what was expected: before run_start (what `train.main` opens first: the
checkpoint directory, the .bin/.idx headers and sizes, the validation tokens, the checkpoint's arrays), or,
for a token id outside the vocabulary in a training file (read sample by sample), mid-run with the run
`aborted` and its log complete.

Not applicable: an out-of-range value in the checkpoint (its arrays are weights, any float is one). Unreadable
files: the tests run as root, which reads any file, so a directory takes the file's name instead.
"""
from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gpt3 import data, train
from gpt3.checkpoint import CheckpointError, load_checkpoint
from gpt3.model import GPT, GPTConfig
from gpt3.optim import build_optimizer
from gpt3.synthetic import LanguageSpec, synthesize
from tests.conftest import GPT3_CPU_CONFIG
from tests.faults import assert_caught, record

CPU = GPTConfig.cpu()
TRAIN, VALID = data.TRAIN_FILES[0], data.VALID_FILE
CKPT = "ckpt1-consumed_samples=0"
WORD = "language_model.embedding.word_embeddings.weight"
FC1 = "language_model.encoder.layers.mlp.dense_h_to_4h.weight"


def preproc(root: Path, name: str, ext: str) -> Path:
    return root / "preproc_data" / f"{name}.{ext}"


def halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def to_directory(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.mkdir()


def patch(path: Path, offset: int, raw: bytes) -> None:
    old = path.read_bytes()
    path.write_bytes(old[:offset] + raw + old[offset + len(raw):])


def remove(*paths):
    return lambda root: [(root / p).unlink() for p in paths]


def bad_token_in_every_document(name: str):
    """Token 5 of every document is an id past the CPU model's vocabulary."""
    def corrupt(root: Path) -> None:
        ds = data.IndexedDataset(root / "preproc_data" / name)
        tokens = np.memmap(ds.bin_path, ds.dtype, mode="r+")
        for start, size in zip(ds.pointers // ds.dtype.itemsize, ds.sizes):
            if size > 5:
                tokens[start + 5] = CPU.vocab_size + 44
        tokens.flush()
    return corrupt


def rewrite_array(name: str, shape=None, dtype=None):
    def corrupt(root: Path) -> None:
        import zarr

        path = root / CKPT / name
        array = zarr.open_array(str(path), mode="r")[...]
        shutil.rmtree(path)
        array = array if shape is None else np.zeros(shape, array.dtype)
        array = array if dtype is None else array.astype(dtype)
        z = zarr.open_array(str(path), mode="w", shape=array.shape, dtype=array.dtype, chunks=array.shape,
                            zarr_format=2)
        z[...] = array
    return corrupt


def chunk(name: str, layer: int = 1) -> str:
    return f"{CKPT}/{name}/{layer}.0.0"  # a layer's chunk of a stacked array (the moments are one chunk: 0)


OPEN, LOADED = "data opened before run_start", "checkpoint loaded before run_start"
MAIN_BEFORE, MAIN_MID = "train.main before run_start", "train.main mid-run (aborted)"
IDX_BYTES = r"\d+ bytes, but the header's \d+ sequences and \d+ doc_idx entries need \d+ \(truncated or mismatched\)"

# (case, corruption of the copy, where it is caught, the error it must give)
CASES = [
    ("truncated .bin", lambda r: halve(preproc(r, TRAIN, "bin")), OPEN,
     rf"{TRAIN}.bin: \d+ bytes, but \S+{TRAIN}.idx describes \d+ \(truncated, or .bin and .idx do not belong"),
    ("truncated .idx", lambda r: halve(preproc(r, VALID, "idx")), OPEN, rf"{VALID}.idx: {IDX_BYTES}"),
    ("zero-byte .idx", lambda r: empty(preproc(r, VALID, "idx")), OPEN,
     rf"{VALID}.idx: 0 bytes, shorter than the 34-byte header"),
    ("zero-byte .bin", lambda r: empty(preproc(r, TRAIN, "bin")), OPEN,
     rf"{TRAIN}.bin: 0 bytes, but \S+{TRAIN}.idx describes \d+"),
    ("wrong dtype: .idx says int32, .bin holds uint16", lambda r: patch(preproc(r, TRAIN, "idx"), 17, bytes([4])),
     OPEN, rf"{TRAIN}.idx: field 'pointers' counts 2-byte tokens, but the dtype code says int32 \(4 bytes\); "
     r"the dtype code is wrong"),
    ("wrong dtype: float32 tokens", lambda r: patch(preproc(r, VALID, "idx"), 17, bytes([7])), OPEN,
     rf"{VALID}.idx: dtype code 7 \(float32\), expected an integer token dtype"),
    ("wrong shape: a sequence's size changed", lambda r: patch(preproc(r, VALID, "idx"), 34, struct.pack("<i", 3)),
     OPEN, rf"{VALID}.idx: field 'pointers' entry 1 is \d+, expected 6 from the sizes"),
    ("out-of-range token id (validation)", bad_token_in_every_document(VALID), OPEN,
     rf"{VALID}.bin: sequence 0 has token id 300 at position 5, outside the vocabulary of 256 ids"),
    ("out-of-range token id (training)", bad_token_in_every_document(TRAIN), MAIN_MID,
     rf"{TRAIN}.bin: sequence \d+ has token id 300 at position 5, outside the vocabulary of 256 ids"),
    ("missing split: validation removed", remove(f"preproc_data/{VALID}.bin", f"preproc_data/{VALID}.idx"),
     MAIN_BEFORE, rf"{VALID}.idx does not exist \(expected a file of Megatron's .bin/.idx pair\)"),
    ("missing split: a training file removed", remove(f"preproc_data/{data.TRAIN_FILES[1]}.bin"), OPEN,
     rf"{data.TRAIN_FILES[1]}.bin does not exist \(expected a file of Megatron's .bin/.idx pair\)"),
    ("unreadable .idx (a directory)", lambda r: to_directory(preproc(r, TRAIN, "idx")), OPEN,
     rf"{TRAIN}.idx is a directory, expected a file of Megatron's .bin/.idx pair"),
    ("checkpoint missing", lambda r: shutil.rmtree(r / CKPT), MAIN_BEFORE,
     r"expected exactly one \S+/ckpt\*-consumed_samples=0 directory \(found 0\); pass --init-checkpoint"),
    ("checkpoint: truncated chunk", lambda r: halve(r / chunk(FC1)), LOADED,
     rf"{CKPT}: array '{FC1}' cannot be read \(RuntimeError: .*\); a chunk is truncated or corrupt, expected "
     r"float32 chunks of \(1, 256, 64\)"),
    ("checkpoint: zero-byte chunk", lambda r: empty(r / chunk(f"optimizer.state.exp_avg.{FC1}", 0)), LOADED,
     rf"{CKPT}: array 'optimizer.state.exp_avg.{FC1}' cannot be read \(RuntimeError: .*\); a chunk is truncated"),
    ("checkpoint: chunk removed", remove(chunk(FC1)), LOADED,
     rf"{CKPT}: array '{FC1}' has 1 of its 2 chunks \(truncated copy\?\)"),
    ("checkpoint: wrong shape", rewrite_array(WORD, shape=(128, 64)), LOADED,
     rf"{CKPT}: array '{WORD}' has shape \(128, 64\), the model expects \(256, 64\)"),
    ("checkpoint: wrong dtype", rewrite_array(WORD, dtype=np.int32), LOADED,
     rf"{CKPT}: array '{WORD}' has dtype int32, expected floating point \(float32\)"),
    ("checkpoint: zero-byte common.pt", lambda r: empty(r / CKPT / "common.pt"), LOADED,
     rf"{CKPT}: common.pt cannot be loaded \(.*\); truncated or corrupt"),
    ("checkpoint: unreadable common.pt (a directory)", lambda r: to_directory(r / CKPT / "common.pt"), LOADED,
     rf"{CKPT}: common.pt is missing or not a file; expected torch.save of {{'step', 'consumed_samples'}}"),
    ("checkpoint: truncated metadata.json", lambda r: halve(r / CKPT / "metadata.json"), LOADED,
     rf"{CKPT}: metadata.json is not a JSON object \(.*\); expected {{\"sharded_backend\": \"zarr\"}}"),
]


@pytest.fixture(scope="module")
def gpt3_tiny(tmp_path_factory) -> Path:
    """The synthetic layout at its smallest: 8 documents per file (2 validation windows), a 1-step checkpoint."""
    root = tmp_path_factory.mktemp("gpt3-tiny")
    synthesize(root, LanguageSpec(train_documents=8, valid_documents=8), pretrain_steps=1)
    return root


def open_data(root: Path) -> None:
    """What `train.main` reads before run_start: the datasets (all validation tokens), then the checkpoint."""
    _, valid = data.open_c4(root / "preproc_data", CPU.vocab_size)
    data.validation_batches(valid, CPU.seq_len, 0, 1, 4)
    torch.manual_seed(0)
    model = GPT(CPU)
    load_checkpoint(model, build_optimizer([model], torch.device("cpu")), root / CKPT)


@pytest.mark.parametrize("case,corrupt,where,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named(case, corrupt, where, message, gpt3_tiny, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(gpt3_tiny, root, ignore=shutil.ignore_patterns("raw"))
    corrupt(root)
    log = None
    start = time.monotonic()
    if where in (OPEN, LOADED):
        with pytest.raises((data.DataError, CheckpointError)) as error:
            open_data(root)
    else:  # a tiny run: the CPU config's first step of 4 sequences hits a bad token
        log = tmp_path / "run.log"
        with pytest.raises((data.DataError, FileNotFoundError)) as error:
            train.main(["--data-dir", str(root), "--config", str(GPT3_CPU_CONFIG), "--seed", "1",
                        "--log-file", str(log)])
        assert_caught(log, before_run_start=where == MAIN_BEFORE)
        if where == MAIN_BEFORE:
            log = None  # no run started: the table says so
    seconds = time.monotonic() - start
    assert error.match(message)
    assert str(root) in str(error.value)  # the file is named by its path
    record(case, "gpt3", where, seconds, log, str(error.value), root)


def test_the_tiny_copy_opens(gpt3_tiny, tmp_path):
    """The uncorrupted copy passes every check the cases trip."""
    shutil.copytree(gpt3_tiny, tmp_path / "data", ignore=shutil.ignore_patterns("raw"))
    open_data(tmp_path / "data")
    assert json.loads((tmp_path / "data" / "SYNTHETIC.json").read_text())["checkpoint"] == CKPT
