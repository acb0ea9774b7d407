"""Bad input, table-driven: corrupted copies of the tiny synthetic dataset (`dlrm_tiny`) in both layouts.

Each case corrupts one file of a copy and must fail with a `DataError` naming the file and what was expected:
at open time (`data.open_split`, what `train.main` calls before run_start) for what the files' sizes and
headers show, or mid-run for what only the rows themselves show (an id outside its table, a label other than
0/1: checked as each batch is read; the tests check that `train.main`'s run ends `aborted`, its log complete).

Not applicable: a wrong dtype or shape in the binary layout cannot be named as such (its files have no header):
a file of other records is caught by its size ("binary: records of int64 ids"). Unreadable files: the tests run
as root, which reads any file, so a directory takes the file's name instead.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from common.synthetic import MARKER
from dlrm_dcnv2 import data, preprocess, train
from dlrm_dcnv2.model import ModelShape
from tests.conftest import DLRM_CPU_CONFIG
from tests.faults import assert_caught, record

SMALL = ModelShape.small()
ROWS, EVAL_ROWS = 256, 1000  # per training day, day 23 (the `dlrm_tiny` fixture)
RECORD = data.record_dtype(SMALL.hotness).itemsize


def halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def to_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def remove(*names: str):
    return lambda root: [(root / name).unlink() for name in names]


def rewrite_npz(name: str, change) -> callable:
    def corrupt(root: Path) -> None:
        with np.load(root / name) as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        np.savez(root / name, **arrays)
    return corrupt


def set_at(arrays: dict, key: str, index: tuple, value: int) -> None:
    arrays[key][index] = value


def wrong_binary_records(root: Path) -> None:
    """val_data.bin with the ids written as int64: records of 1,768 bytes, not 912."""
    records = np.fromfile(root / data.EVAL_BINARY, data.record_dtype(SMALL.hotness))
    wide = np.dtype([("label", "<i4"), ("dense", "<f4", (13,)), ("sparse", "<i8", (sum(SMALL.hotness),))])
    out = np.empty(len(records), wide)
    out["label"], out["dense"], out["sparse"] = records["label"], records["dense"], records["sparse"]
    out.tofile(root / data.EVAL_BINARY)


def set_binary_id(root: Path, row: int, value: int) -> None:
    records = np.memmap(root / data.TRAIN_BINARY, data.record_dtype(SMALL.hotness), mode="r+")
    records["sparse"][row, 0] = value
    records.flush()


def set_binary_label(root: Path) -> None:
    records = np.memmap(root / data.TRAIN_BINARY, data.record_dtype(SMALL.hotness), mode="r+")
    records["label"][10] = 2
    records.flush()


OPEN, RUN = "data opened before run_start", "train.main mid-run (aborted)"

# (case, layout, split opened, corruption of the copy, where it is caught, the error it must give)
CASES = [
    ("numpy: truncated labels .npy", "numpy", "train", lambda r: halve(r / "day_5_labels.npy"), OPEN,
     r"day_5_labels.npy: not a readable .npy file \(.*\); truncated or corrupt"),
    ("numpy: truncated .npz", "numpy", "train", lambda r: halve(r / "day_3_sparse_multi_hot.npz"), OPEN,
     r"day_3_sparse_multi_hot.npz: not a readable .npz \(.*\); truncated or corrupt"),
    ("numpy: zero-byte dense .npy", "numpy", "eval", lambda r: empty(r / "day_23_dense.npy"), OPEN,
     r"day_23_dense.npy: not a readable .npy file \(No data left in file\); truncated or corrupt"),
    ("numpy: zero-byte .npz", "numpy", "train", lambda r: empty(r / "day_0_sparse_multi_hot.npz"), OPEN,
     r"day_0_sparse_multi_hot.npz: not a readable .npz"),
    ("numpy: labels of wrong dtype", "numpy", "train",
     lambda r: np.save(r / "day_2_labels.npy", np.zeros((ROWS, 1), np.float32)), OPEN,
     r"day_2_labels.npy: expected int32 of shape \(None, 1\) or \(None,\), found float32 \(256, 1\)"),
    ("numpy: .npz member of wrong dtype", "numpy", "train",
     rewrite_npz("day_1_sparse_multi_hot.npz", lambda a: a.update({"4": a["4"].astype(np.int64)})), OPEN,
     r"day_1_sparse_multi_hot.npz: feature 4 \(cat_4, member '4.npy'\): expected int32 C-order \(256, \d+\), "
     r"found int64"),
    ("numpy: dense of wrong shape", "numpy", "train",
     lambda r: np.save(r / "day_7_dense.npy", np.zeros((ROWS, 12), np.float32)), OPEN,
     r"day_7_dense.npy: expected float32 of shape \(256, 13\), found float32 \(256, 12\)"),
    ("numpy: labels and dense of different lengths", "numpy", "eval",
     lambda r: np.save(r / "day_23_labels.npy", np.zeros((EVAL_ROWS - 1, 1), np.int32)), OPEN,
     r"day_23_dense.npy: expected float32 of shape \(999, 13\), found float32 \(1000, 13\)"),
    ("numpy: id outside its table", "numpy", "train",
     rewrite_npz("day_0_sparse_multi_hot.npz", lambda a: set_at(a, "3", (17, 0), SMALL.table_rows[3])), RUN,
     rf"day_0_sparse_multi_hot.npz: feature 3 \(cat_3\) has id {SMALL.table_rows[3]} at row 17, "
     rf"outside its table of {SMALL.table_rows[3]} rows"),
    ("numpy: label 2", "numpy", "train",
     lambda r: np.save(r / "day_0_labels.npy", np.where(np.arange(ROWS) == 40, 2, 0).astype(np.int32)[:, None]),
     RUN, r"day_0_labels.npy: label 2 at row 40, expected 0 or 1"),
    ("numpy: eval split (day 23) removed", "numpy", "eval",
     remove("day_23_labels.npy", "day_23_dense.npy", "day_23_sparse_multi_hot.npz"), OPEN,
     r"day_23_labels.npy: missing; expected a .npy file of int32"),
    ("numpy: training day removed", "numpy", "train", remove("day_11_dense.npy"), OPEN,
     r"day_11_dense.npy: missing; expected a .npy file of float32 \(256, 13\)"),
    ("numpy: unreadable .npz (a directory)", "numpy", "train",
     lambda r: to_directory(r / "day_9_sparse_multi_hot.npz"), OPEN,
     r"day_9_sparse_multi_hot.npz: missing \(a directory is in its place\); expected an uncompressed np.savez"),
    ("binary: truncated train_data.bin", "binary", "train", lambda r: halve(r / data.TRAIN_BINARY), OPEN,
     rf"train_data.bin: {23 * ROWS // 2} records, expected {23 * ROWS} \(the dataset's SYNTHETIC.json\); "
     r"truncated"),
    ("binary: truncated mid-record", "binary", "eval",
     lambda r: (r / data.EVAL_BINARY).write_bytes((r / data.EVAL_BINARY).read_bytes()[:-RECORD // 2]), OPEN,
     rf"val_data.bin: {EVAL_ROWS * RECORD - RECORD // 2} bytes is not a whole number of {RECORD}-byte records"),
    ("binary: zero-byte val_data.bin", "binary", "eval", lambda r: empty(r / data.EVAL_BINARY), OPEN,
     rf"val_data.bin: 0 bytes, expected {RECORD}-byte records; empty"),
    ("binary: records of int64 ids", "binary", "eval", wrong_binary_records, OPEN,
     rf"val_data.bin: {EVAL_ROWS * 1768} bytes is not a whole number of {RECORD}-byte records"),
    ("binary: id outside its table", "binary", "train",
     lambda r: set_binary_id(r, 3, SMALL.table_rows[0] + 5), RUN,
     rf"train_data.bin: feature 0 \(cat_0\) has id {SMALL.table_rows[0] + 5} at row 3, outside its table"),
    ("binary: label 2", "binary", "train", set_binary_label, RUN,
     r"train_data.bin: label 2 at row 10, expected 0 or 1"),
    ("binary: eval split removed", "binary", "eval", remove(data.EVAL_BINARY), OPEN,
     rf"val_data.bin: missing; expected {RECORD}-byte records in NVIDIA's binary layout"),
    ("binary: unreadable train_data.bin (a directory)", "binary", "train",
     lambda r: to_directory(r / data.TRAIN_BINARY), OPEN,
     r"train_data.bin: missing \(a directory is in its place\); expected"),
]


@pytest.fixture(scope="module")
def binary_tiny(dlrm_tiny, tmp_path_factory) -> Path:
    """`dlrm_tiny` in NVIDIA's binary layout, with its marker (which says how many records each file holds)."""
    root = tmp_path_factory.mktemp("dlrm-tiny-binary")
    preprocess.numpy_to_binary(dlrm_tiny, root, SMALL)
    shutil.copy(dlrm_tiny / MARKER, root / MARKER)
    return root


@pytest.mark.parametrize("case,layout,split,corrupt,where,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named(case, layout, split, corrupt, where, message, dlrm_tiny, binary_tiny, tmp_path,
                            monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(dlrm_tiny if layout == "numpy" else binary_tiny, root)
    corrupt(root)
    log = None
    start = time.monotonic()
    if where == OPEN:
        with pytest.raises(data.DataError, match=message) as error:
            data.open_split(root, split, layout, SMALL)
    else:  # a tiny run (23 steps of 256 rows, room for the 20 evaluations): the bad row is in its first batch
        monkeypatch.setenv("DATA_FORMAT", layout)
        monkeypatch.setenv("BATCHSIZE", "256")
        log = tmp_path / "run.log"
        with pytest.raises(data.DataError, match=message) as error:
            train.main(["--data-dir", str(root), "--config", str(DLRM_CPU_CONFIG), "--seed", "1",
                        "--log-file", str(log)])
        assert_caught(log, before_run_start=False)
    seconds = time.monotonic() - start
    assert str(root) in str(error.value)  # the file is named by its path
    record(case, "dlrm_dcnv2", where, seconds, log, str(error.value), root)
