"""Both readers against what the preprocessing command and the synthetic generator write; bad files named."""
import zipfile

import numpy as np
import pytest
import torch

from common import synthetic
from dlrm_dcnv2 import data, preprocess
from dlrm_dcnv2.model import ModelShape, feature_names

SMALL = ModelShape.small()
CPU = torch.device("cpu")


def assert_same_batches(a, b):
    a, b = list(a), list(b)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.valid == y.valid
        torch.testing.assert_close(x.dense, y.dense, rtol=0, atol=0)
        torch.testing.assert_close(x.labels, y.labels, rtol=0, atol=0)
        assert x.sparse.keys() == y.sparse.keys() == feature_names()
        assert torch.equal(x.sparse.values(), y.sparse.values()) and torch.equal(x.sparse.lengths(), y.sparse.lengths())


def assert_readers_agree(numpy_dir, binary_dir, train_days=None, eval_day=None):
    kwargs = {} if train_days is None else {"days": train_days}
    numpy_train = data.open_split(numpy_dir, "train", "numpy", SMALL, **kwargs)
    numpy_eval = data.open_split(numpy_dir, "eval", "numpy", SMALL,
                                 **({} if eval_day is None else {"days": (eval_day,)}))
    binary_train = data.open_split(binary_dir, "train", "binary", SMALL)
    binary_eval = data.open_split(binary_dir, "eval", "binary", SMALL)
    assert len(numpy_train) == len(binary_train) and len(numpy_eval) == len(binary_eval)
    for rank in range(2):
        assert_same_batches(data.train_batches(numpy_train, 64, rank, 2, SMALL.hotness, CPU),
                            data.train_batches(binary_train, 64, rank, 2, SMALL.hotness, CPU))
        assert_same_batches(data.eval_batches(numpy_eval, 300, rank, 2, SMALL.hotness, CPU),
                            data.eval_batches(binary_eval, 300, rank, 2, SMALL.hotness, CPU))


def test_synthetic_days_read_the_same_in_both_layouts(dlrm_tiny, tmp_path):
    marker = synthetic.read_marker(dlrm_tiny)
    assert marker["train_rows"] == 23 * 256 and marker["eval_rows"] == 1000 and synthetic.is_synthetic(dlrm_tiny)
    assert 0.85 < marker["bayes_auc"] < 0.95  # learnable past 0.80275, not trivially
    preprocess.numpy_to_binary(dlrm_tiny, tmp_path, SMALL)
    assert (tmp_path / data.TRAIN_BINARY).stat().st_size == 23 * 256 * 912  # 912-byte records
    assert_readers_agree(dlrm_tiny, tmp_path)


def test_eval_batches_cover_every_row_once_over_the_ranks(dlrm_tiny):
    source = data.open_split(dlrm_tiny, "eval", "numpy", SMALL)
    labels = {rank: [b.labels[:b.valid] for b in data.eval_batches(source, 300, rank, 2, SMALL.hotness, CPU)]
              for rank in range(2)}
    assert len(labels[0]) == len(labels[1]) == 4  # equal step counts on every rank (sharded lookups)
    merged = torch.cat([torch.cat([labels[0][i], labels[1][i]]) for i in range(4)])
    assert torch.equal(merged, torch.from_numpy(source.read(0, 1000).labels).float())


def write_tsv(path, rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows))


def criteo_rows(rng, n):
    rows = []
    for _ in range(n):
        ints = [("" if rng.random() < 0.2 else int(rng.integers(-2, 500))) for _ in range(13)]
        cats = [("" if rng.random() < 0.1 else format(int(rng.integers(0, 5000)), "x")) for _ in range(26)]
        rows.append([int(rng.random() < 0.3), *ints, *cats])
    return rows


def test_preprocessed_tsv_days_read_the_same_in_both_layouts(tmp_path):
    rng = np.random.default_rng(0)
    raw, out, binary = tmp_path / "raw", tmp_path / "numpy", tmp_path / "binary"
    raw.mkdir()
    days = {0: criteo_rows(rng, 300), 23: criteo_rows(rng, 200)}
    for day, rows in days.items():
        write_tsv(raw / f"day_{day}", rows)
    preprocess.main(["tsv", str(raw), str(out), "--days", "0,23", "--model-size", "debug"])

    # day 23, the validation day, keeps its order; day 0, the only training day here, is shuffled
    labels = np.load(out / "day_23_labels.npy")
    dense = np.load(out / "day_23_dense.npy")
    assert labels.dtype == np.int32 and labels.shape == (200, 1)
    assert labels[:, 0].tolist() == [r[0] for r in days[23]]
    assert sorted(np.load(out / "day_0_labels.npy")[:, 0].tolist()) == sorted(r[0] for r in days[0])
    # TorchRec 1.9.2's tsv_to_npys: log(x - m + 2), m the day's smallest integer (missing -> 0)
    ints = np.array([[x or 0 for x in r[1:14]] for r in days[23]])
    np.testing.assert_allclose(dense, np.log(ints - ints.min() + 2).astype(np.float32), rtol=1e-6)
    # sparse_to_contiguous: 2, 3, ... in order of first appearance over day 0 then day 23, not capped here
    first_seen = {}
    for r in days[0] + days[23]:
        first_seen.setdefault(int(r[14 + 3] or "0", 16), len(first_seen) + 2)
    one_hot = np.load(out / "day_23_sparse.npy")
    assert one_hot[:, 3].tolist() == [first_seen[int(r[17] or "0", 16)] for r in days[23]]
    with np.load(out / "day_23_sparse_multi_hot.npz") as npz:
        multi = [npz[str(j)] for j in range(26)]
    assert [m.shape[1] for m in multi] == list(SMALL.hotness)
    assert all((m >= 0).all() and (m < rows).all() for m, rows in zip(multi, SMALL.table_rows))
    ids = one_hot[:, 20] % SMALL.table_rows[20]  # the reference caps ids when it materialises the bags
    assert (multi[20][:, 0] == ids).all()  # the sample's own id comes first
    same = np.flatnonzero(ids == ids[0])
    assert (multi[20][same] == multi[20][0]).all()  # a bag is a function of the id (one lookup table)

    preprocess.numpy_to_binary(out, binary, SMALL, train_days=(0,))
    assert_readers_agree(out, binary, train_days=(0,))


def test_a_malformed_tsv_line_is_named(tmp_path):
    (tmp_path / "day_0").write_text("1\t2\t3\n")
    with pytest.raises(preprocess.PreprocessError, match=r"day_0:1: 3 tab-separated fields"):
        preprocess.tsv_to_numpy(tmp_path, tmp_path / "out", [0])


@pytest.fixture
def one_day(dlrm_tiny, tmp_path):
    """A copy of day 23 as day 0 of a fresh folder, to damage."""
    for name in (data.LABELS_FILE, data.DENSE_FILE, data.MULTI_HOT_FILE):
        (tmp_path / name.format(day=0)).write_bytes((dlrm_tiny / name.format(day=23)).read_bytes())
    return tmp_path


def open_day(root):
    return data.NumpyDay(root, 0, SMALL)


def test_wrong_dtype_is_named(one_day):
    np.save(one_day / "day_0_labels.npy", np.zeros((1000, 1), np.float32))
    with pytest.raises(data.DataError, match=r"day_0_labels.npy: expected int32 .* found float32"):
        open_day(one_day)


def test_wrong_shape_is_named(one_day):
    np.save(one_day / "day_0_dense.npy", np.zeros((1000, 12), np.float32))
    with pytest.raises(data.DataError, match=r"day_0_dense.npy: expected float32 of shape \(1000, 13\)"):
        open_day(one_day)


def test_truncated_npz_is_named(one_day):
    path = one_day / "day_0_sparse_multi_hot.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(data.DataError, match=r"day_0_sparse_multi_hot.npz: not a readable .npz"):
        open_day(one_day)


def test_compressed_npz_member_is_named(one_day):
    path = one_day / "day_0_sparse_multi_hot.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(path, **arrays)
    with pytest.raises(data.DataError, match=r"feature 0 \(cat_0, member '0.npy'\) is compressed"):
        open_day(one_day)


def test_wrong_member_shape_is_named(one_day):
    path = one_day / "day_0_sparse_multi_hot.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["20"] = arrays["20"][:, :99]
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match=r"feature 20 \(cat_20, member '20.npy'\): expected int32 C-order "
                                             r"\(1000, 100\), found int32 \(1000, 99\)"):
        open_day(one_day)


def test_id_beyond_its_table_is_named_with_file_feature_and_row(one_day):
    path = one_day / "day_0_sparse_multi_hot.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["3"][517, 1] = SMALL.table_rows[3]
    np.savez(path, **arrays)
    day = open_day(one_day)
    day.read(0, 500)  # rows before the bad one are fine
    with pytest.raises(data.DataError, match=rf"day_0_sparse_multi_hot.npz: feature 3 \(cat_3\) has id "
                                             rf"{SMALL.table_rows[3]} at row 517, outside its table"):
        day.read(500, 600)


def test_truncated_binary_file_is_named(tmp_path):
    (tmp_path / "val_data.bin").write_bytes(bytes(912 * 3 + 100))
    with pytest.raises(data.DataError, match=r"val_data.bin: 2836 bytes is not a whole number of 912-byte records"):
        data.BinaryFile(tmp_path / "val_data.bin", SMALL)


def test_missing_npz_member_is_named(one_day):
    path = one_day / "day_0_sparse_multi_hot.npz"
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "7.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw)
    with pytest.raises(data.DataError, match=r"feature 7 \(cat_7, member '7.npy'\) is missing"):
        open_day(one_day)
