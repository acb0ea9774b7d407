"""`preprocess tsv` against TorchRec's own functions and the reference's multi-hot algorithm; resume; errors.

The reference is mlcommons/training at 1f22be54f44a0800b425ad88d61ed6592bc5deed, recommendation_v2/torchrec_dlrm/:
scripts/process_Criteo_1TB_Click_Logs_dataset.sh (TorchRec's npy_preproc_criteo, contiguous_preproc_criteo
--frequency_threshold 0, shuffle_preproc_criteo --random_seed 0) and scripts/materialize_synthetic_multihot_dataset.py
with multi_hot.py's Multihot.
"""
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from torchrec.datasets.criteo import BinaryCriteoUtils

from dlrm_dcnv2 import data, preprocess
from dlrm_dcnv2.model import ModelShape

SMALL = ModelShape.small()
DAYS, EVAL_DAY = (0, 1, 2), 2  # TorchRec's shuffle(days=3): days 0 and 1 shuffled together, day 2 copied


def criteo_day(rng, n, smallest):
    """Raw Criteo lines: missing fields, one integer `smallest` (in the middle line), hex categories repeating
    within and across days (32-bit ones too: the values the reference's torchrec 0.3.2 wrapped to negative int32)."""
    lines = []
    for i in range(n):
        ints = [("" if rng.random() < 0.2 else int(rng.integers(max(smallest, 0), 300))) for _ in range(13)]
        if i == n // 2:
            ints[1] = smallest
        cats = [("" if rng.random() < 0.1 else format(int(rng.integers(0, 2 ** 32 if j % 3 == 0 else 50 + 40 * j)),
                                                         "x")) for j in range(26)]
        lines.append("\t".join(map(str, [int(rng.random() < 0.3), *ints, *cats])) + "\n")
    return lines


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(0)
    for day, n, smallest in zip(DAYS, (200, 150, 180), (-2, -1, 0)):  # three different day minima
        (folder / f"day_{day}").write_text("".join(criteo_day(rng, n, smallest)))
    return folder


def torchrec_directly(raw, work):
    """What process_Criteo_1TB_Click_Logs_dataset.sh runs, with TorchRec's functions called on whole days."""
    step1, step2, step3 = work / "step1", work / "step2", work / "step3"
    for folder in (step1, step2, step3):
        folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Local function is not supported by pickle")
        for d in DAYS:  # npy_preproc_criteo
            BinaryCriteoUtils.tsv_to_npys(str(raw / f"day_{d}"), str(step1 / f"day_{d}_dense.npy"),
                                          str(step1 / f"day_{d}_sparse.npy"), str(step1 / f"day_{d}_labels.npy"))
    BinaryCriteoUtils.sparse_to_contiguous([str(step1 / f"day_{d}_sparse.npy") for d in DAYS], str(step2),
                                           frequency_threshold=0)  # contiguous_preproc_criteo --frequency_threshold 0
    for d in DAYS:  # the script's `mv day_${i}_sparse_contig_freq.npy day_${i}_sparse.npy`
        os.replace(step2 / f"day_{d}_sparse_contig_freq.npy", step2 / f"day_{d}_sparse.npy")
    # shuffle_preproc_criteo counts the rows of days 0..DAYS-2 only (its count_rows processes)
    rows = {d: len(np.load(step1 / f"day_{d}_labels.npy")) for d in DAYS[:-1]}
    BinaryCriteoUtils.shuffle(str(step1), str(step2), str(step3), rows, days=len(DAYS), random_seed=0)
    return step3


def reference_multi_hot(sparse_path, table_rows, hotness):
    """materialize_synthetic_multihot_dataset.py's main() for one day, with Multihot(dist_type="uniform"), restated
    from the reference's source (multi_hot.py, Multihot.__make_multi_hot_indices_tables)."""
    np.random.seed(0)  # "The seed is necessary for all ranks to produce the same lookup values."
    multi_hot_tables_l = []
    for embs_count, multi_hot_size in zip(table_rows, hotness):
        embedding_ids = np.arange(embs_count)[:, np.newaxis]
        synthetic_sparse_ids = np.random.randint(0, embs_count, size=(embs_count, multi_hot_size - 1))
        multi_hot_tables_l.append(np.concatenate((embedding_ids, synthetic_sparse_ids), axis=-1))
    multi_hot_tables_l = [torch.from_numpy(t).int() for t in multi_hot_tables_l]
    sparse_data = np.load(sparse_path, mmap_mode="r")
    multi_hot_ids_dict = {}
    for j, (multi_hot_table, hash) in enumerate(zip(multi_hot_tables_l, table_rows)):
        sparse_tensor = torch.from_numpy(sparse_data[:, j] % hash)
        multi_hot_ids_dict[str(j)] = torch.nn.functional.embedding(sparse_tensor, multi_hot_table).numpy()
    return multi_hot_ids_dict


def run_command(raw, out, *extra):
    preprocess.main(["tsv", str(raw), str(out), "--days", "0-2", "--eval-day", str(EVAL_DAY), "--model-size", "debug",
                     "--piece-rows", "37", *extra])


@pytest.fixture(scope="module")
def command_out(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    run_command(raw, out)
    return out


def output_files(out):
    return sorted(p.name for p in out.iterdir())


def test_command_gives_torchrecs_arrays_and_the_reference_multi_hot(raw, command_out, tmp_path):
    expected = torchrec_directly(raw, tmp_path)
    assert not (command_out / preprocess.WORK_DIR).exists()  # removed when done
    for d in DAYS:
        for name in (data.LABELS_FILE, data.DENSE_FILE, data.ONE_HOT_FILE):
            ours, theirs = np.load(command_out / name.format(day=d)), np.load(expected / name.format(day=d))
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs), name.format(day=d)
        assert np.load(command_out / data.ONE_HOT_FILE.format(day=d)).dtype == np.int32  # the reference's dtype
        with np.load(command_out / data.MULTI_HOT_FILE.format(day=d)) as npz:
            ours = {k: npz[k] for k in npz.files}
        theirs = reference_multi_hot(expected / data.ONE_HOT_FILE.format(day=d), SMALL.table_rows, SMALL.hotness)
        assert list(ours) == list(theirs)
        for k in theirs:
            assert ours[k].dtype == theirs[k].dtype == np.int32 and np.array_equal(ours[k], theirs[k]), (d, k)
        day = data.NumpyDay(command_out, d, SMALL)  # what training reads: every id within its table
        assert len(day.read(0, len(day))) == len(day)
    # (the command ran tsv_to_npys on pieces of 37 lines, only one of which holds its day's smallest integer)
    assert not np.array_equal(np.load(command_out / "day_0_labels.npy")[:, 0],
                              np.load(expected.parent / "step1" / "day_0_labels.npy")[:, 0])  # shuffled


def test_shuffle_matches_torchrecs_including_the_float32_rounding_of_large_ids(tmp_path):
    rng = np.random.default_rng(1)
    inputs, theirs, ours = tmp_path / "in", tmp_path / "torchrec", tmp_path / "ours"
    for folder in (inputs, theirs, ours):
        folder.mkdir()
    rows = {0: 300, 1: 211, 2: 50}
    for d, n in rows.items():
        np.save(inputs / f"day_{d}_labels.npy", rng.integers(0, 2, (n, 1)).astype(np.int32))
        np.save(inputs / f"day_{d}_dense.npy", rng.random((n, 13), dtype=np.float32) * 10)
        np.save(inputs / f"day_{d}_sparse.npy", rng.integers(2, 1 << 28, (n, 26)).astype(np.int32))
    train_rows = {0: rows[0], 1: rows[1]}  # as shuffle_preproc_criteo passes them: days 0..DAYS-2
    BinaryCriteoUtils.shuffle(str(inputs), str(inputs), str(theirs), train_rows, days=3, random_seed=0)
    preprocess.shuffle_days(inputs, inputs, ours, [0, 1], seed=0, work_dir=tmp_path / "work")
    for d in (0, 1):
        for name in (data.LABELS_FILE, data.DENSE_FILE, data.ONE_HOT_FILE):
            a, b = np.load(ours / name.format(day=d)), np.load(theirs / name.format(day=d))
            assert a.dtype == b.dtype and np.array_equal(a, b), name.format(day=d)
    before = np.concatenate([np.load(inputs / f"day_{d}_sparse.npy") for d in (0, 1)])
    after = np.concatenate([np.load(ours / f"day_{d}_sparse.npy") for d in (0, 1)])
    assert not np.array_equal(np.sort(before, axis=None), np.sort(after, axis=None))  # ids > 2**24 were rounded
    assert np.array_equal(np.sort(before.astype(np.float32).astype(np.int32), axis=None), np.sort(after, axis=None))
    assert not (tmp_path / "work" / "shuffle_buckets").exists()


def test_multi_hot_tables_are_the_references_draws_in_chunks():
    table_rows, hotness = (1000, 7, 1, 50, 3, 40), (3, 1, 2, 100, 5, 12)
    np.random.seed(0)  # multi_hot.py, restated: one randint per table, in feature order
    expected = [np.concatenate((np.arange(n)[:, np.newaxis], np.random.randint(0, n, size=(n, h - 1))), axis=-1)
                for n, h in zip(table_rows, hotness)]
    for draw_values in (7, 1 << 22):  # chunks of whole rows take the same values from the stream
        tables = preprocess.multi_hot_tables(table_rows, hotness, seed=0, draw_values=draw_values)
        for ours, theirs in zip(tables, expected):
            assert ours.dtype == np.int32 and np.array_equal(ours, theirs)


def test_a_rerun_skips_finished_days(raw, command_out, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(command_out, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / data.MULTI_HOT_FILE.format(day=1)).unlink()

    def fail(*args, **kwargs):
        raise AssertionError("TorchRec called again")

    monkeypatch.setattr(BinaryCriteoUtils, "tsv_to_npys", staticmethod(fail))
    monkeypatch.setattr(BinaryCriteoUtils, "sparse_to_contiguous", staticmethod(fail))
    run_command(raw, out)
    log = capsys.readouterr().out
    assert "[multi-hot] day_0: already complete, skipped" in log and "day_1_sparse_multi_hot.npz: 100% done" in log
    assert output_files(out) == output_files(command_out)
    for name, stamp in stamps.items():
        if name != data.MULTI_HOT_FILE.format(day=1):
            assert (out / name).stat().st_mtime_ns == stamp, name  # not rewritten
    with np.load(out / "day_1_sparse_multi_hot.npz") as a, np.load(command_out / "day_1_sparse_multi_hot.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)


def test_an_interrupted_run_resumes_where_it_stopped(raw, command_out, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    contiguous = BinaryCriteoUtils.sparse_to_contiguous
    calls = {"tsv_to_npys": 0, "sparse_to_contiguous": 0}

    def crash_at_feature_5(*args, **kwargs):
        calls["sparse_to_contiguous"] += 1
        if calls["sparse_to_contiguous"] == 6:
            raise KeyboardInterrupt
        return contiguous(*args, **kwargs)

    monkeypatch.setattr(BinaryCriteoUtils, "sparse_to_contiguous", staticmethod(crash_at_feature_5))
    with pytest.raises(KeyboardInterrupt):
        run_command(raw, out)
    tsv_to_npys = BinaryCriteoUtils.tsv_to_npys

    def count(*args, **kwargs):
        calls["tsv_to_npys"] += 1
        return tsv_to_npys(*args, **kwargs)

    monkeypatch.setattr(BinaryCriteoUtils, "tsv_to_npys", staticmethod(count))
    (out / preprocess.WORK_DIR / "tsv_to_npys" / "day_1_labels.npy.tmp").write_bytes(b"left by a crash")
    capsys.readouterr()
    run_command(raw, out)
    log = capsys.readouterr().out
    assert calls == {"tsv_to_npys": 0, "sparse_to_contiguous": 6 + 21}  # features 5..25 only, no day re-read
    assert "[tsv_to_npys] day_2: already complete, skipped" in log
    assert "[sparse_to_contiguous] feature 4: already complete, skipped" in log
    assert output_files(out) == output_files(command_out)
    for name in output_files(out):
        if name.endswith(".npy"):
            assert np.array_equal(np.load(out / name), np.load(command_out / name)), name


def test_progress_lines_tell_time_elapsed_and_left(raw, tmp_path, capsys):
    run_command(raw, tmp_path / "out")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[tsv_to_npys] day_")]
    assert len(lines) == 6 + 5 + 5  # pieces of 37 lines: 200, 150 and 180 lines
    assert all(" elapsed, ~" in line and line.endswith(" left") for line in lines)


def write(folder, name, lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(lines))


def good_lines(n=3, seed=0):
    return criteo_day(np.random.default_rng(seed), n, -1)


def test_a_missing_day_is_named(tmp_path):
    write(tmp_path, "day_0", good_lines())
    with pytest.raises(preprocess.PreprocessError, match=r"day_1: missing; expected Criteo's raw day 1, uncompressed"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0, 1], SMALL.table_rows, SMALL.hotness)
    # the failed run left no claim on the folder: other days may be asked for
    assert not (tmp_path / "out" / preprocess.MANIFEST).exists()


def test_a_wrong_field_count_is_named(tmp_path):
    lines = good_lines(4)
    lines[2] = lines[2].rstrip("\n") + "\textra\n"
    write(tmp_path, "day_0", lines)
    with pytest.raises(preprocess.PreprocessError, match=r"day_0:3: 41 tab-separated fields, expected 40 "
                                                         r"\(label, 13 integers, 26 hex categories\)"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0], SMALL.table_rows, SMALL.hotness)


def test_a_non_integer_field_is_named(tmp_path):
    lines = good_lines(4)
    fields = lines[1].split("\t")
    fields[2] = "1.5"
    lines[1] = "\t".join(fields)
    write(tmp_path, "day_0", lines)
    with pytest.raises(preprocess.PreprocessError, match=r"day_0:2: field 3 \(int_1\) is '1.5', expected an integer"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0], SMALL.table_rows, SMALL.hotness)


def test_a_non_hex_category_is_named_with_its_line(tmp_path):
    lines = good_lines(9)
    fields = lines[7].rstrip("\n").split("\t")
    fields[20] = "xyz"
    lines[7] = "\t".join(fields) + "\n"
    write(tmp_path, "day_0", lines)
    with pytest.raises(preprocess.PreprocessError, match=r"day_0:8: field 21 \(cat_6\) is 'xyz', expected a "
                                                         r"hexadecimal category"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0], SMALL.table_rows, SMALL.hotness, piece_rows=3)


def test_an_empty_day_is_named(tmp_path):
    write(tmp_path, "day_0", [])
    with pytest.raises(preprocess.PreprocessError, match=r"day_0: empty; expected Criteo rows"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0], SMALL.table_rows, SMALL.hotness)


def test_a_rerun_with_other_days_is_refused(raw, command_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(command_out, out)
    with pytest.raises(preprocess.PreprocessError, match=r"tsv_manifest.json: left by a run with days=\[0, 1, 2\]"):
        preprocess.tsv_to_numpy(raw, out, [0, 1], SMALL.table_rows, SMALL.hotness, eval_day=1)
