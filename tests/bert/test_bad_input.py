"""Bad input, table-driven: each case corrupts one file of a copy of a tiny synthetic BERT input (packed and
variable-length shards, the eval file, the phase-1 checkpoint) and runs `bert.train.main` on the CPU config.

Before `run_start` the run opens everything: the checkpoint is found, the training directory listed, the HDF5
header of every shard the rank will read checked (`bert.data.check_shard`: HDF5 refuses a truncated file at
open; keys, dtypes, shapes and row counts are metadata), the eval file read whole and the checkpoint loaded. A
training shard's values (row lengths, id ranges) are read only when the stream reaches it, mid-run: an
out-of-range id there aborts the run (`run_stop` `aborted`), the shard named, at the first batch (every shard
is corrupted, so the first one read fails).

The tiny input is written by the benchmark's own writers (`bert.synthetic.write_synthetic` with a small spec,
and an untrained tiny model saved as the checkpoint: 0.1 s); the `bert_synthetic` fixture trains a phase-1
model (40 s), which no case here needs. Not applicable: an out-of-range id in the checkpoint (it holds weights,
no ids); the cases of a variable-length shard that share the packed shard's code path (zero-byte, dtype,
directory: `check_shard` and `_open` do not tell the layouts apart until the keys) are run on one of them.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bert import train
from bert.checkpoint import save_checkpoint
from bert.data import EVAL_FILE, PACKED_DIR, PHASE1_DIR, VARLENGTH_DIR
from bert.model import BertConfig, BertForPreTraining
from bert.synthetic import SyntheticSpec, write_synthetic
from tests.conftest import BERT_CPU_CONFIG
from tests.faults import assert_caught, record

TINY = SyntheticSpec(train_shards=2, sequences_per_shard=64, eval_sequences=32)
PACKED = f"{PACKED_DIR}/part_00000"
VARLENGTH = f"{VARLENGTH_DIR}/part_00000_of_00002.hdf5"
CHECKPOINT = f"{PHASE1_DIR}/model.ckpt-0.pt"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bert-tiny")
    write_synthetic(root, TINY)
    torch.manual_seed(0)
    save_checkpoint(BertForPreTraining(BertConfig.tiny()), root / CHECKPOINT)
    return root


def column(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][:]


def rewrite(path: Path, key: str, data, dtype) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f.create_dataset(key, data=data, dtype=dtype)


def vlen(rows: list, dtype) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [np.asarray(r, dtype=dtype) for r in rows]
    return out


def truncated(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def input_ids_int32(path: Path) -> Path:
    rewrite(path, "input_ids", vlen(list(column(path, "input_ids")), np.int32), h5py.vlen_dtype(np.int32))
    return path


def nsp_float(path: Path) -> Path:
    rewrite(path, "next_sentence_labels", column(path, "next_sentence_labels").astype(np.float32), np.float32)
    return path


def int_weight(path: Path) -> Path:
    blob = torch.load(path, weights_only=True)
    key = "bert.encoder.layer.0.attention.self.query.weight"
    blob["model"][key] = blob["model"][key].long()
    torch.save(blob, path)
    return path


def padded_2d_input_ids(path: Path) -> Path:
    """NVIDIA's older phase-2 layout: input_ids padded to a fixed [N, 128] (with an input_mask)."""
    rows = column(path, "input_ids")
    padded = np.zeros((len(rows), TINY.max_seq_len), np.int16)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    rewrite(path, "input_ids", padded, np.int16)
    return path


def one_row_short(path: Path) -> Path:
    lens = list(column(path, "packed_input_len"))[:-1]
    rewrite(path, "packed_input_len", vlen(lens, np.int16), h5py.vlen_dtype(np.int16))
    return path


def packed_as_eval(path: Path) -> Path:
    shutil.copy(path.parents[1] / PACKED, path)
    return path


def transposed_weight(path: Path) -> Path:
    blob = torch.load(path, weights_only=True)
    key = "bert.encoder.layer.0.intermediate.dense.weight"
    blob["model"][key] = blob["model"][key].t().contiguous()
    torch.save(blob, path)
    return path


def input_id_past_vocab(path: Path) -> Path:
    ids = list(column(path, "input_ids"))
    ids[3] = ids[3].copy()
    ids[3][5] = TINY.vocab_size  # one past the tiny model's 128-token vocabulary
    rewrite(path, "input_ids", vlen(ids, np.int16), h5py.vlen_dtype(np.int16))
    return path


def masked_id_past_vocab_in_every_shard(path: Path) -> Path:
    for shard in path.parent.iterdir():
        ids = [np.full_like(row, TINY.vocab_size) for row in column(shard, "masked_lm_ids")]
        rewrite(shard, "masked_lm_ids", vlen(ids, np.int16), h5py.vlen_dtype(np.int16))
    return path.parent  # whichever shard the stream reads first is named


def removed_dir(path: Path) -> Path:
    shutil.rmtree(path.parent)
    return path.parent


def removed(path: Path) -> Path:
    path.unlink()
    return path


def directory_of_its_name(path: Path) -> Path:
    """Root reads any file, so 'unreadable' is an entry that is not a file: a directory with the file's name."""
    path.unlink()
    path.mkdir()
    return path


OPEN = "data opened before run_start"
READ = "shard read by the training stream, mid-run (run aborted)"
HDF5_TRUNCATED = r"not a readable HDF5 file \(.*truncated file.*\); found \d+ bytes, expected a complete HDF5 file"
HDF5_EMPTY = r"not a readable HDF5 file \(.*file signature not found.*\); found 0 bytes, expected a complete HDF5"

CASES = [  # (case, file corrupted, corruption, where it is caught, what the message says after the file's name)
    ("truncated packed shard", PACKED, truncated, OPEN, HDF5_TRUNCATED),
    ("truncated varlength shard", VARLENGTH, truncated, OPEN, HDF5_TRUNCATED),
    ("truncated eval file", EVAL_FILE, truncated, OPEN, HDF5_TRUNCATED),
    ("truncated checkpoint", CHECKPOINT, truncated, OPEN,
     r" cannot be read \(.*\); \d+ bytes, expected a complete torch.save file"),
    ("zero-byte packed shard", PACKED, zero_bytes, OPEN, HDF5_EMPTY),
    ("zero-byte eval file", EVAL_FILE, zero_bytes, OPEN, HDF5_EMPTY),
    ("zero-byte checkpoint", CHECKPOINT, zero_bytes, OPEN,
     r" cannot be read \(.*\); 0 bytes, expected a complete torch.save file"),
    ("wrong dtype: packed input_ids int32", PACKED, input_ids_int32, OPEN,
     r"dataset 'input_ids' holds 1-D variable-length int32 of shape \(\d+,\), expected 1-D variable-length int16"),
    ("wrong dtype: eval next_sentence_labels float32", EVAL_FILE, nsp_float, OPEN,
     r"dataset 'next_sentence_labels' holds 1-D float32 of shape \(32,\), expected 1-D int8"),
    ("wrong dtype: checkpoint weight int64", CHECKPOINT, int_weight, OPEN,
     r": 'bert.encoder.layer.0.attention.self.query.weight' holds torch.int64, the model expects a floating-point"),
    ("wrong shape: varlength input_ids padded 2-D", VARLENGTH, padded_2d_input_ids, OPEN,
     r"dataset 'input_ids' holds 2-D int16 of shape \(64, 128\), expected 1-D variable-length int16"),
    ("wrong shape: packed_input_len a row short", PACKED, one_row_short, OPEN,
     r"dataset 'packed_input_len' has (\d+) rows, expected as many as 'input_ids' \(\d+\)"),
    ("wrong shape: packed file as the eval file", EVAL_FILE, packed_as_eval, OPEN,
     r"dataset 'input_ids' holds rows of up to [23] sequences \(a packed file\?\), expected one sequence per row"),
    ("wrong shape: checkpoint weight transposed", CHECKPOINT, transposed_weight, OPEN,
     r": 'bert.encoder.layer.0.intermediate.dense.weight' has shape \(64, 128\), the model expects \(128, 64\)"),
    ("out-of-range id: eval input_ids", EVAL_FILE, input_id_past_vocab, OPEN,
     r"dataset 'input_ids' row 3 holds 128, expected 0..127, the model's vocabulary"),
    ("out-of-range id: packed masked_lm_ids", PACKED, masked_id_past_vocab_in_every_shard, READ,
     r"/part_0000[01]: dataset 'masked_lm_ids' row \d+ holds 128, expected 0..127, the model's vocabulary"),
    ("missing split: packed_data/ removed", PACKED, removed_dir, OPEN,
     r" does not exist; expected a directory of HDF5 shards"),
    ("missing split: eval file removed", EVAL_FILE, removed, OPEN,
     r" does not exist; expected the variable-length eval HDF5 file"),
    ("missing split: phase1/ removed", CHECKPOINT, removed_dir, OPEN,
     r"expected exactly one .*/phase1/model.ckpt-\*.pt \(found 0\); pass --init-checkpoint"),
    ("unreadable packed shard (a directory)", PACKED, directory_of_its_name, OPEN,
     r": not a regular file \(a directory or a broken link\), expected an HDF5 shard"),
    ("unreadable eval file (a directory)", EVAL_FILE, directory_of_its_name, OPEN,
     r": a directory, expected an HDF5 file"),
    ("unreadable checkpoint (a directory)", CHECKPOINT, directory_of_its_name, OPEN,
     r" is a directory, expected a torch.save file"),
]


@pytest.mark.parametrize("case, target, corrupt, caught, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_naming_the_file_and_what_was_expected(tiny_bert, tmp_path, case, target, corrupt,
                                                                caught, expected):
    root = tmp_path / "bert"
    shutil.copytree(tiny_bert, root)
    bad = corrupt(root / target)
    log = tmp_path / "run.log"
    train_dir = ["--train-dir", str(root / VARLENGTH_DIR)] if target == VARLENGTH else []
    start = time.monotonic()
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        train.main(["--data-dir", str(root), "--config", str(BERT_CPU_CONFIG), "--seed", "1", "--log-file",
                    str(log), *train_dir])
    seconds = time.monotonic() - start
    message = str(err.value)
    assert str(bad) in message and re.search(expected, message), message
    assert_caught(log, before_run_start=caught == OPEN)
    record(case, "bert", caught, seconds, None if caught == OPEN else log, message, root)
