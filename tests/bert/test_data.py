import itertools
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bert.data import (EVAL_FILE, PACKED_DIR, VARLENGTH_DIR, DataError, Rows, TrainStream, _units, collate,
                       list_shards, load_eval_batches, read_shard, row_predictions, write_varlength)
from bert.packing import best_fit_decreasing, pack_rows, pack_shard, pack_shards
from bert.synthetic import SyntheticLanguage, SyntheticSpec, write_synthetic

SEQ_LEN, MAX_PRED = 64, 10
LANG = SyntheticLanguage(vocab_size=64, topics=2, follow=0.9, seed=0)


def make_sequences(n: int, seed: int = 0, min_len: int = 8, max_len: int = SEQ_LEN,
                   max_predictions: int = MAX_PRED) -> list[dict]:
    """n synthetic sequences with pairwise distinct tokens (so a row can be identified by its tokens)."""
    rng = np.random.default_rng(seed)
    seqs = [LANG.sequence(rng, int(length), max_predictions) for length in rng.integers(min_len, max_len + 1, n)]
    assert len({tuple(s["input_ids"]) for s in seqs}) == n
    return seqs


def write_shard(path: Path, n: int, seed: int = 0, **kw) -> list[dict]:
    seqs = make_sequences(n, seed, **kw)
    write_varlength(path, seqs)
    return seqs


def key(seq: dict) -> tuple:
    """Everything a sequence carries, hashable."""
    return (tuple(seq["input_ids"]), tuple(seq["segment_ids"]), tuple(seq["masked_lm_positions"]),
            tuple(seq["masked_lm_ids"]), seq["next_sentence_label"])


def rewrite(path: Path, name: str, values, dtype, vlen: bool = True) -> None:
    """Replace dataset `name` of an existing file."""
    with h5py.File(path, "a") as f:
        del f[name]
        if vlen:
            column = np.empty(len(values), dtype=object)
            column[:] = [np.asarray(v, dtype=dtype) for v in values]
            f.create_dataset(name, data=column, dtype=h5py.vlen_dtype(np.dtype(dtype)))
        else:
            f.create_dataset(name, data=np.asarray(values, dtype=dtype))


def column(path: Path, name: str) -> list:
    with h5py.File(path, "r") as f:
        return [np.asarray(v) for v in f[name][:]]


def batch_rows(batches) -> list[tuple]:
    """Tokens of every sequence in collated batches, one tuple per sequence."""
    out = []
    for b in batches:
        for ids, lens in zip(b["input_ids"], b["seq_lens"]):
            start = 0
            for n in lens[lens > 0].tolist():
                out.append(tuple(ids[start:start + n].tolist()))
                start += n
    return out


def stream(files, *, rank=0, world_size=1, seed=0, batch_size=4):
    return iter(TrainStream(files, batch_size=batch_size, seq_len=SEQ_LEN, max_predictions=MAX_PRED, rank=rank,
                            world_size=world_size, seed=seed))


# --- round trip and on-disk layout -----------------------------------------------------------------------


def test_write_varlength_then_read_shard_gives_back_every_sequence_exactly(tmp_path):
    path = tmp_path / "part_00000_of_00001.hdf5"
    seqs = write_shard(path, 12)
    rows = read_shard(path, SEQ_LEN, MAX_PRED)
    assert len(rows) == rows.num_sequences == 12
    for i, s in enumerate(seqs):
        assert rows.input_ids[i].tolist() == s["input_ids"]
        assert rows.segment_ids[i].tolist() == s["segment_ids"]
        assert rows.masked_positions[i].tolist() == s["masked_lm_positions"]
        assert rows.masked_ids[i].tolist() == s["masked_lm_ids"]
        assert rows.nsp_labels[i].tolist() == [s["next_sentence_label"]]
        assert rows.seq_lens[i].tolist() == [len(s["input_ids"])]
        assert rows.masked_lens[i].tolist() == [len(s["masked_lm_positions"])]


def test_varlength_file_has_nvidias_dtypes_on_disk(tmp_path):
    path = tmp_path / "v.hdf5"
    write_shard(path, 5)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(["input_ids", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                                           "next_sentence_labels"])
        for name, dtype in [("input_ids", np.int16), ("segment_ids", np.int8), ("masked_lm_positions", np.int16),
                            ("masked_lm_ids", np.int16)]:
            assert h5py.check_vlen_dtype(f[name].dtype) == np.dtype(dtype), name
            assert f[name].shape == (5,)
        nsp = f["next_sentence_labels"]
        assert h5py.check_vlen_dtype(nsp.dtype) is None
        assert nsp.dtype == np.int8 and nsp.shape == (5,)


# --- packing ----------------------------------------------------------------------------------------------


def check_groups(groups, lengths, capacity, max_per_row):
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert 1 <= len(g) <= max_per_row
        assert sum(lengths[i] for i in g) <= capacity


def test_best_fit_decreasing_respects_capacity_and_row_size_and_places_every_sequence_once():
    rng = np.random.default_rng(0)
    for trial in range(20):
        lengths = rng.integers(1, 129, int(rng.integers(1, 300)))
        groups = best_fit_decreasing(lengths, 128, 3)
        check_groups(groups, lengths, 128, 3)
        assert len(groups) >= max(-(-lengths.sum() // 128), -(-len(lengths) // 3))


def test_best_fit_decreasing_packs_a_small_case_tightly():
    # 60,60 fill the first row to 120; 60 opens a second, two 30s join it (3 per row); the last 30 opens a third.
    lengths = np.array([30, 60, 30, 60, 30, 60])
    groups = best_fit_decreasing(lengths, 128, 3)
    assert sorted(sorted(lengths[g].tolist()) for g in groups) == [[30], [30, 30, 60], [60, 60]]
    assert len(groups) == 3  # = ceil(270 / 128), optimal
    # four 64s and four 32s sum to 3 * 128, but the limit of 3 per row forces a fourth row
    lengths = np.array([64] * 4 + [32] * 4)
    assert len(best_fit_decreasing(lengths, 128, 3)) == 4
    assert len(best_fit_decreasing(lengths, 128, 4)) == 3


def test_best_fit_decreasing_chooses_the_fullest_row_that_still_fits():
    # 64 -> row 0, 40 -> row 0 (24 free), 40 -> row 1 (88 free), 30 -> row 1 (58 free); 20 fits both and
    # goes to row 0, the one with less room
    groups = best_fit_decreasing(np.array([64, 40, 40, 30, 20]), 128, 3)
    assert groups == [[0, 1, 4], [2, 3]]


def test_best_fit_decreasing_rejects_a_sequence_longer_than_the_row():
    with pytest.raises(ValueError, match="sequence 1 has 129 tokens"):
        best_fit_decreasing(np.array([10, 129]), 128, 3)


def test_pack_shard_writes_nvidias_packed_layout(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "packed" / "part_00000"
    write_shard(src, 30)
    pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=1)
    with h5py.File(dst, "r") as f:
        assert sorted(f.keys()) == sorted(["input_ids", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                                           "packed_input_len", "packed_masked_lm_len", "next_sentence_labels"])
        for name, dtype in [("input_ids", np.int16), ("segment_ids", np.int8), ("masked_lm_positions", np.int16),
                            ("masked_lm_ids", np.int16), ("packed_input_len", np.int16),
                            ("packed_masked_lm_len", np.int16), ("next_sentence_labels", np.int8)]:
            assert h5py.check_vlen_dtype(f[name].dtype) == np.dtype(dtype), name
            assert f[name].ndim == 1


def test_pack_shard_keeps_every_sequence_exactly_once_with_positions_shifted_into_the_row(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "part_00000"
    seqs = write_shard(src, 40, min_len=8, max_len=SEQ_LEN)
    n, num_rows = pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=1)
    rows = read_shard(dst, SEQ_LEN, MAX_PRED)
    assert (n, num_rows) == (40, len(rows))
    assert num_rows == len(best_fit_decreasing(np.array([len(s["input_ids"]) for s in seqs]), SEQ_LEN, 3))
    assert num_rows < 30  # lengths 8..64 into rows of 64: well under one row per sequence
    unpacked = []
    for i in range(len(rows)):
        tokens, segments = rows.input_ids[i], rows.segment_ids[i]
        positions, ids = rows.masked_positions[i], rows.masked_ids[i]
        assert len(tokens) <= SEQ_LEN and 1 <= len(rows.seq_lens[i]) <= 3
        start, pred = 0, 0
        for length, count, nsp in zip(rows.seq_lens[i], rows.masked_lens[i], rows.nsp_labels[i]):
            length, count = int(length), int(count)
            seq_pos = positions[pred:pred + count]
            assert ((seq_pos >= start) & (seq_pos < start + length)).all()
            unpacked.append({"input_ids": tokens[start:start + length].tolist(),
                             "segment_ids": segments[start:start + length].tolist(),
                             "masked_lm_positions": (seq_pos - start).tolist(),
                             "masked_lm_ids": ids[pred:pred + count].tolist(), "next_sentence_label": int(nsp)})
            start, pred = start + length, pred + count
        assert (start, pred) == (len(tokens), len(positions))
    assert Counter(map(key, unpacked)) == Counter(map(key, seqs))


def test_pack_shard_shuffles_the_rows_with_its_seed(tmp_path):
    src = tmp_path / "v.hdf5"
    seqs = write_shard(src, 40)
    packed = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        pack_shard(src, tmp_path / name, SEQ_LEN, MAX_PRED, seed=seed)
        packed[name] = [tuple(t.tolist()) for t in column(tmp_path / name, "input_ids")]
    assert packed["a"] == packed["b"]
    assert packed["a"] != packed["c"] and sorted(packed["a"]) == sorted(packed["c"])
    longest_first = [len(seqs[g[0]]["input_ids"]) for g in
                     best_fit_decreasing(np.array([len(s["input_ids"]) for s in seqs]), SEQ_LEN, 3)]
    first_lengths = [int(n[0]) for n in column(tmp_path / "a", "packed_input_len")]
    assert sorted(first_lengths, reverse=True) == longest_first != first_lengths  # not in packing order


def test_pack_rows_offsets_masked_positions_by_the_sequences_start():
    seqs = Rows(input_ids=[np.array([1, 5, 2]), np.array([1, 6, 7, 2]), np.array([1, 8, 2, 9, 2])],
                segment_ids=[np.array([0, 0, 0]), np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1, 1])],
                masked_positions=[np.array([1]), np.array([1, 2]), np.array([3])],
                masked_ids=[np.array([11]), np.array([12, 13]), np.array([14])],
                seq_lens=[np.array([3]), np.array([4]), np.array([5])],
                masked_lens=[np.array([1]), np.array([2]), np.array([1])],
                nsp_labels=[np.array([0]), np.array([1]), np.array([1])])
    out = pack_rows(seqs, [[2, 0], [1]])
    assert out.input_ids[0].tolist() == [1, 8, 2, 9, 2, 1, 5, 2]
    assert out.segment_ids[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert out.masked_positions[0].tolist() == [3, 6]
    assert out.masked_ids[0].tolist() == [14, 11]
    assert out.seq_lens[0].tolist() == [5, 3] and out.masked_lens[0].tolist() == [1, 1]
    assert out.nsp_labels[0].tolist() == [1, 0]
    assert out.masked_positions[1].tolist() == [1, 2] and out.seq_lens[1].tolist() == [4]


def test_pack_shard_refuses_an_already_packed_file(tmp_path):
    src = tmp_path / "v.hdf5"
    write_shard(src, 20)
    pack_shard(src, tmp_path / "p", SEQ_LEN, MAX_PRED, seed=0)
    with pytest.raises(ValueError, match="already packed"):
        pack_shard(tmp_path / "p", tmp_path / "pp", SEQ_LEN, MAX_PRED, seed=0)


def test_pack_shards_names_outputs_by_sorted_input_and_returns_sequences_per_row(tmp_path):
    a, b = tmp_path / "v" / "part_00001.hdf5", tmp_path / "v" / "part_00000.hdf5"
    write_shard(a, 10, seed=1)
    seqs_b = write_shard(b, 14, seed=2)
    ratio = pack_shards([a, b], tmp_path / "packed", max_seq_len=SEQ_LEN, max_predictions=MAX_PRED, seed=5)
    assert sorted(p.name for p in (tmp_path / "packed").iterdir()) == ["part_00000", "part_00001"]
    first = read_shard(tmp_path / "packed" / "part_00000", SEQ_LEN, MAX_PRED)
    second = read_shard(tmp_path / "packed" / "part_00001", SEQ_LEN, MAX_PRED)
    assert (first.num_sequences, second.num_sequences) == (14, 10)  # part_00000 comes from b, the first sorted
    assert set(batch_rows([collate(first, SEQ_LEN, MAX_PRED)])) == {tuple(s["input_ids"]) for s in seqs_b}
    assert ratio == pytest.approx(24 / (len(first) + len(second)))


def test_write_synthetic_with_a_tiny_spec_writes_readable_varlength_packed_and_eval_files(tmp_path):
    spec = SyntheticSpec(train_shards=2, sequences_per_shard=50, eval_sequences=20)
    write_synthetic(tmp_path, spec)
    shards = list_shards(tmp_path / VARLENGTH_DIR)
    packed = list_shards(tmp_path / PACKED_DIR)
    assert [p.name for p in shards] == ["part_00000_of_00002.hdf5", "part_00001_of_00002.hdf5"]
    assert [p.name for p in packed] == ["part_00000", "part_00001"]
    for s, p in zip(shards, packed):
        seqs = read_shard(s, spec.max_seq_len, spec.max_predictions)
        rows = read_shard(p, spec.max_seq_len, spec.max_predictions)
        assert len(seqs) == rows.num_sequences == 50
        assert len(rows) < 40  # half the sequences are at most max_seq_len / 2 long
        assert Counter(batch_rows([collate(seqs, spec.max_seq_len, spec.max_predictions)])) == \
            Counter(batch_rows([collate(rows, spec.max_seq_len, spec.max_predictions)]))
    batches, total = load_eval_batches(tmp_path / EVAL_FILE, batch_size=8, seq_len=spec.max_seq_len,
                                       max_predictions=spec.max_predictions, rank=0, world_size=1)
    assert total == 20 and [len(b["input_ids"]) for b in batches] == [8, 8, 4]


# --- collate ----------------------------------------------------------------------------------------------


def test_collate_pads_tokens_predictions_and_sequences():
    rows = Rows(input_ids=[np.array([1, 5, 2, 1, 6], np.int16), np.array([1, 3, 7, 2], np.int16)],
                segment_ids=[np.array([0, 0, 1, 0, 1], np.int8), np.array([0, 0, 1, 1], np.int8)],
                masked_positions=[np.array([1, 4], np.int16), np.array([1], np.int16)],
                masked_ids=[np.array([9, 8], np.int16), np.array([12], np.int16)],
                seq_lens=[np.array([3, 2]), np.array([4])], masked_lens=[np.array([1, 1]), np.array([1])],
                nsp_labels=[np.array([0, 1], np.int8), np.array([1], np.int8)])
    batch = collate(rows, seq_len=8, max_predictions=5)
    slots = row_predictions(5)
    assert slots == 8
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "input_ids": (2, 8), "token_type_ids": (2, 8), "seq_lens": (2, 3), "masked_positions": (2, slots),
        "masked_ids": (2, slots), "nsp_labels": (2, 3)}
    assert all(v.dtype == torch.int64 for v in batch.values())
    assert batch["input_ids"].tolist() == [[1, 5, 2, 1, 6, 0, 0, 0], [1, 3, 7, 2, 0, 0, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1, 0, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0]]
    assert batch["seq_lens"].tolist() == [[3, 2, 0], [4, 0, 0]]
    assert batch["masked_positions"].tolist() == [[1, 4, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch["masked_ids"].tolist() == [[9, 8, -1, -1, -1, -1, -1, -1], [12, -1, -1, -1, -1, -1, -1, -1]]
    assert batch["nsp_labels"].tolist() == [[0, 1, -1], [1, -1, -1]]


# --- errors -----------------------------------------------------------------------------------------------


def test_a_truncated_file_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "part_00000_of_00001.hdf5"
    write_shard(path, 20)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError) as err:
        read_shard(path, SEQ_LEN, MAX_PRED)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


def test_a_file_that_is_not_hdf5_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "part_00000"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError, match="not a readable HDF5 file") as err:
        read_shard(path, SEQ_LEN, MAX_PRED)
    assert str(path) in str(err.value)


def drop(path, seqs):
    with h5py.File(path, "a") as f:
        del f["masked_lm_ids"]


def input_ids_int32(path, seqs):
    rewrite(path, "input_ids", [s["input_ids"] for s in seqs], np.int32)


def input_ids_not_vlen(path, seqs):
    rewrite(path, "input_ids", [s["input_ids"][:8] for s in seqs], np.int16, vlen=False)


def nsp_int32(path, seqs):
    rewrite(path, "next_sentence_labels", [s["next_sentence_label"] for s in seqs], np.int32, vlen=False)


def short_segment_row(path, seqs):
    rewrite(path, "segment_ids", [s["segment_ids"][:-1] if i == 3 else s["segment_ids"]
                                  for i, s in enumerate(seqs)], np.int8)


def masked_position_past_the_row(path, seqs):
    rewrite(path, "masked_lm_positions", [[len(s["input_ids"])] * len(s["masked_lm_positions"]) if i == 2
                                          else s["masked_lm_positions"] for i, s in enumerate(seqs)], np.int16)


def negative_masked_position(path, seqs):
    rewrite(path, "masked_lm_positions", [[-1] * len(s["masked_lm_positions"]) if i == 4
                                          else s["masked_lm_positions"] for i, s in enumerate(seqs)], np.int16)


def fewer_masked_ids(path, seqs):
    rewrite(path, "masked_lm_ids", [s["masked_lm_ids"][:-1] if i == 1 else s["masked_lm_ids"]
                                    for i, s in enumerate(seqs)], np.int16)


def fewer_nsp_rows(path, seqs):
    rewrite(path, "next_sentence_labels", [s["next_sentence_label"] for s in seqs[:-1]], np.int8, vlen=False)


@pytest.mark.parametrize("corrupt, key, fragment", [
    (drop, "masked_lm_ids", "is missing"),
    (input_ids_int32, "input_ids", "int32"),
    (input_ids_not_vlen, "input_ids", "variable-length"),
    (nsp_int32, "next_sentence_labels", "int32"),
    (short_segment_row, "segment_ids", "row 3 "),
    (masked_position_past_the_row, "masked_lm_positions", "row 2 points outside"),
    (negative_masked_position, "masked_lm_positions", "row 4 points outside"),
    (fewer_masked_ids, "masked_lm_ids", "row 1 "),
    (fewer_nsp_rows, "next_sentence_labels", "has 7 rows"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_a_bad_varlength_file_is_a_data_error_naming_the_file_and_the_key(tmp_path, corrupt, key, fragment):
    path = tmp_path / "part_00000_of_00001.hdf5"
    seqs = write_shard(path, 8)
    read_shard(path, SEQ_LEN, MAX_PRED)  # valid before
    corrupt(path, seqs)
    with pytest.raises(DataError) as err:
        read_shard(path, SEQ_LEN, MAX_PRED)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and fragment in message, message


def test_a_packed_row_whose_lengths_do_not_sum_to_the_row_is_a_data_error(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "part_00000"
    write_shard(src, 20)
    pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=0)
    lens = column(dst, "packed_input_len")
    lens[0] = lens[0] + np.eye(len(lens[0]), dtype=np.int16)[0]  # first sequence one token longer
    rewrite(dst, "packed_input_len", lens, np.int16)
    with pytest.raises(DataError) as err:
        read_shard(dst, SEQ_LEN, MAX_PRED)
    assert str(dst) in str(err.value) and "'packed_input_len' row 0 " in str(err.value)


def test_a_packed_row_with_mismatched_label_count_is_a_data_error(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "part_00000"
    write_shard(src, 20)
    pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=0)
    labels = column(dst, "next_sentence_labels")
    labels[1] = np.append(labels[1], 0)
    rewrite(dst, "next_sentence_labels", labels, np.int8)
    with pytest.raises(DataError) as err:
        read_shard(dst, SEQ_LEN, MAX_PRED)
    assert str(dst) in str(err.value) and "'next_sentence_labels' row 1 " in str(err.value)


def test_a_row_longer_than_max_seq_len_is_a_data_error(tmp_path):
    path = tmp_path / "v.hdf5"
    seqs = write_shard(path, 10)
    longest = max(len(s["input_ids"]) for s in seqs)
    read_shard(path, longest, MAX_PRED)
    with pytest.raises(DataError) as err:
        read_shard(path, longest - 1, MAX_PRED)
    assert str(path) in str(err.value) and "'input_ids'" in str(err.value)
    assert f"has {longest} tokens, more than the maximum sequence length {longest - 1}" in str(err.value)


def test_a_row_with_too_many_predictions_is_a_data_error(tmp_path):
    path = tmp_path / "v.hdf5"
    seqs = write_shard(path, 10, min_len=SEQ_LEN, max_len=SEQ_LEN)  # round(0.15 * 61) = 9 predictions each
    assert {len(s["masked_lm_positions"]) for s in seqs} == {9}
    read_shard(path, SEQ_LEN, 9)
    with pytest.raises(DataError, match="9 predictions, more than 8 per sequence") as err:
        read_shard(path, SEQ_LEN, 8)
    assert str(path) in str(err.value)


def test_too_many_predictions_in_a_varlength_file_names_a_key_the_file_has(tmp_path):
    path = tmp_path / "v.hdf5"
    write_shard(path, 10, min_len=SEQ_LEN, max_len=SEQ_LEN)
    with pytest.raises(DataError) as err:
        read_shard(path, SEQ_LEN, 8)
    assert "'masked_lm_positions'" in str(err.value)


def test_a_variable_length_nsp_column_in_a_varlength_file_is_a_data_error(tmp_path):
    path = tmp_path / "v.hdf5"
    seqs = write_shard(path, 6)
    rewrite(path, "next_sentence_labels", [[s["next_sentence_label"], 1] for s in seqs], np.int8)
    with pytest.raises(DataError) as err:
        read_shard(path, SEQ_LEN, MAX_PRED)
    assert "'next_sentence_labels'" in str(err.value)


def test_list_shards_rejects_a_missing_or_empty_directory_and_skips_hidden_files(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        list_shards(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_text("")
    (tmp_path / "empty" / "subdir").mkdir()
    with pytest.raises(DataError, match="holds no shards") as err:
        list_shards(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value)
    for name in ["part_00001", "part_00000"]:
        (tmp_path / "empty" / name).write_bytes(b"")
    assert [p.name for p in list_shards(tmp_path / "empty")] == ["part_00000", "part_00001"]


def test_load_eval_batches_on_a_missing_file_is_a_data_error(tmp_path):
    path = tmp_path / "eval_varlength" / "part_eval_10k.hdf5"
    with pytest.raises(DataError, match="does not exist") as err:
        load_eval_batches(path, batch_size=4, seq_len=SEQ_LEN, max_predictions=MAX_PRED, rank=0, world_size=1)
    assert str(path) in str(err.value)


# --- training stream --------------------------------------------------------------------------------------


def test_units_splits_whole_files_when_there_are_enough_and_strides_rows_otherwise():
    files = [Path(f"part_{i}") for i in range(5)]
    assert _units(files, 2, 0) == [(files[0], 0, 1), (files[2], 0, 1), (files[4], 0, 1)]
    assert _units(files, 2, 1) == [(files[1], 0, 1), (files[3], 0, 1)]
    assert _units(files[:1], 3, 2) == [(files[0], 2, 3)]


def test_two_ranks_read_disjoint_shards_that_together_cover_every_row_each_pass(tmp_path):
    files, tokens = [], []
    for s in range(4):
        files.append(tmp_path / f"part_{s:05d}")
        tokens.append({tuple(q["input_ids"]) for q in write_shard(files[-1], 8, seed=100 + s)})
    per_pass = 2 * 8 // 4  # 2 shards of 8 rows per rank, batches of 4
    seen = []
    for rank in range(2):
        batches = list(itertools.islice(stream(files, rank=rank, world_size=2), 2 * per_pass))
        first, second = batch_rows(batches[:per_pass]), batch_rows(batches[per_pass:])
        assert len(first) == len(set(first)) == 16
        assert set(first) == set(second) == tokens[rank] | tokens[rank + 2]  # files[rank::2], again next pass
        seen.append(set(first))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set().union(*tokens)


def test_two_ranks_stride_the_rows_of_a_single_shard(tmp_path):
    path = tmp_path / "part_00000"
    seqs = write_shard(path, 12)
    for rank in range(2):
        batches = list(itertools.islice(stream([path], rank=rank, world_size=2, batch_size=3), 2))
        assert all(b["input_ids"].shape == (3, SEQ_LEN) for b in batches)
        got = batch_rows(batches)
        assert sorted(got) == sorted(tuple(s["input_ids"]) for s in seqs[rank::2])


def test_dataloader_workers_split_the_shards_of_a_rank_further(tmp_path, monkeypatch):
    files = [tmp_path / f"part_{s:05d}" for s in range(4)]
    tokens = [{tuple(q["input_ids"]) for q in write_shard(f, 4, seed=200 + i)} for i, f in enumerate(files)]

    class Info:
        num_workers, id = 2, 0

    for rank, worker in itertools.product(range(2), range(2)):
        Info.id = worker
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Info)
        got = batch_rows(itertools.islice(stream(files, rank=rank, world_size=2), 1))
        assert set(got) == tokens[2 * rank + worker]  # reader rank * workers + worker of 4 reads one file


def test_rows_left_over_at_the_end_of_a_pass_start_the_next_one(tmp_path):
    path = tmp_path / "part_00000"
    seqs = write_shard(path, 10)
    batches = list(itertools.islice(stream([path], batch_size=4), 5))  # 20 rows: exactly two passes
    assert Counter(batch_rows(batches)) == {tuple(s["input_ids"]): 2 for s in seqs}


def test_the_same_seed_gives_the_same_batches_and_another_seed_another_order(tmp_path):
    files = [tmp_path / f"part_{s:05d}" for s in range(2)]
    for s, f in enumerate(files):
        write_shard(f, 8, seed=300 + s)
    take = lambda seed: list(itertools.islice(stream(files, seed=seed), 4))  # noqa: E731  (one pass)
    a, b, c = take(7), take(7), take(8)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert batch_rows(a) != batch_rows(c)
    assert sorted(batch_rows(a)) == sorted(batch_rows(c))


def test_rows_are_shuffled_within_a_shard_differently_each_pass(tmp_path):
    path = tmp_path / "part_00000"
    seqs = write_shard(path, 12)
    in_file = [tuple(s["input_ids"]) for s in seqs]
    batches = batch_rows(itertools.islice(stream([path], seed=7), 6))  # two passes of 12 rows
    first, second = batches[:12], batches[12:]
    assert sorted(first) == sorted(second) == sorted(in_file)
    assert len({tuple(in_file), tuple(first), tuple(second)}) == 3
    other_seed = batch_rows(itertools.islice(stream([path], seed=8), 3))
    assert sorted(other_seed) == sorted(first) and other_seed != first


def test_the_stream_reads_packed_shards(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "packed" / "part_00000"
    seqs = write_shard(src, 30)
    _, num_rows = pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=0)
    batches = list(itertools.islice(stream([dst], batch_size=1), num_rows))
    assert sorted(batch_rows(batches)) == sorted(tuple(s["input_ids"]) for s in seqs)
    assert max(int((b["seq_lens"][0] > 0).sum()) for b in batches) > 1


# --- eval -------------------------------------------------------------------------------------------------


def test_eval_batches_of_two_ranks_hold_every_eval_sequence_once(tmp_path):
    path = tmp_path / "part_eval_10k.hdf5"
    seqs = write_shard(path, 21)
    shares = []
    for rank in range(2):
        batches, total = load_eval_batches(path, batch_size=4, seq_len=SEQ_LEN, max_predictions=MAX_PRED,
                                           rank=rank, world_size=2)
        assert total == 21
        assert [b["input_ids"].shape[0] for b in batches] == ([4, 4, 3] if rank == 0 else [4, 4, 2])
        assert all(b["masked_ids"].shape == (b["input_ids"].shape[0], row_predictions(MAX_PRED)) for b in batches)
        shares.append(batch_rows(batches))
        assert shares[-1] == [tuple(s["input_ids"]) for s in seqs[rank::2]]
    assert Counter(shares[0] + shares[1]) == Counter(tuple(s["input_ids"]) for s in seqs)
    assert len(shares[0]) + len(shares[1]) == 21


def test_a_packed_file_is_rejected_as_the_eval_file(tmp_path):
    src, dst = tmp_path / "v.hdf5", tmp_path / "part_00000"
    write_shard(src, 20)
    pack_shard(src, dst, SEQ_LEN, MAX_PRED, seed=0)
    with pytest.raises(DataError, match="one sequence per row") as err:
        load_eval_batches(dst, batch_size=4, seq_len=SEQ_LEN, max_predictions=MAX_PRED, rank=0, world_size=1)
    assert str(dst) in str(err.value)


# --- synthetic language -----------------------------------------------------------------------------------


def test_synthetic_sequences_are_well_formed_bert_sequences():
    lang = SyntheticLanguage(vocab_size=128, topics=3, follow=0.9, seed=1)
    rng = np.random.default_rng(0)
    labels, masked_tokens = Counter(), Counter()
    for length, max_predictions in itertools.product(range(5, 129, 3), [5, 20]):
        s = lang.sequence(rng, length, max_predictions)
        tokens, segments, positions = s["input_ids"], s["segment_ids"], s["masked_lm_positions"]
        assert len(tokens) == len(segments) == length
        assert tokens[0] == lang.CLS and tokens[-1] == lang.SEP
        seps = [i for i, t in enumerate(tokens) if t == lang.SEP]
        assert len(seps) == 2 and lang.CLS not in tokens[1:] and lang.PAD not in tokens
        assert segments == [0] * (seps[0] + 1) + [1] * (length - seps[0] - 1)
        assert seps[0] >= 2 and seps[1] - seps[0] >= 2  # both segments have a word
        words = length - 3
        assert len(positions) == len(s["masked_lm_ids"]) == min(max_predictions, max(1, round(0.15 * words)))
        assert positions == sorted(set(positions))
        assert all(p not in (0, seps[0], seps[1]) and 0 < p < length for p in positions)
        assert all(lang.FIRST_WORD <= w < 128 for w in s["masked_lm_ids"])
        assert all(t == lang.MASK or lang.FIRST_WORD <= t < 128 for t in (tokens[p] for p in positions))
        assert all(t != lang.MASK for i, t in enumerate(tokens) if i not in positions)
        masked_tokens.update(tokens[p] == lang.MASK for p in positions)
        labels[s["next_sentence_label"]] += 1
    assert set(labels) == {0, 1} and min(labels.values()) > 0.3 * sum(labels.values())
    assert 0.7 < masked_tokens[True] / sum(masked_tokens.values()) < 0.9  # 80% become [MASK]


def test_synthetic_walk_follows_the_topics_successor_map():
    lang = SyntheticLanguage(vocab_size=32, topics=2, follow=1.0, seed=3)
    rng = np.random.default_rng(0)
    for topic in range(2):
        walk = lang.walk(rng, topic, 20)
        assert all(lang.successor[topic, a] == b for a, b in zip(walk, walk[1:]))
    assert not np.array_equal(lang.successor[0], lang.successor[1])
    assert sorted(lang.successor[0, 4:].tolist()) == list(range(4, 32))
