"""Megatron indexed dataset: what the preprocessing writes, read back; broken files named; samples and blending."""
import json
import struct

import numpy as np
import pytest

from gpt3.data import (DataError, IndexedDataset, blend, build_samples, gpt_sample, paths, token_dtype,
                       write_indexed)
from gpt3.preprocess import tokenize_file


def documents(n=12, seed=0, vocab=500):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, rng.integers(1, 40)).astype(np.uint16) for _ in range(n)]


def test_round_trip_and_megatron_header(tmp_path):
    docs = documents()
    prefix = tmp_path / "c4_en_6_c4_spm_text_document"
    write_indexed(prefix, docs, np.uint16)
    raw = paths(prefix)[1].read_bytes()
    magic, version, code, count, doc_count = struct.unpack_from("<9sQBQQ", raw)
    assert (magic, version, code, count, doc_count) == (b"MMIDIDX\x00\x00", 1, 8, 12, 13)
    ds = IndexedDataset(prefix)
    assert len(ds) == 12 and ds.dtype == np.uint16
    for i, d in enumerate(docs):
        assert ds[i].tolist() == d.tolist()
    assert ds.doc_idx.tolist() == list(range(13))


def test_token_dtype_follows_megatron():
    assert token_dtype(51200) == np.uint16 and token_dtype(256000) == np.int32


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    root = tmp_path_factory.mktemp("spm")
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    (root / "corpus.txt").write_text("\n".join(" ".join(rng.choice(words, 12)) for _ in range(300)))
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(root / "spm"),
                                   vocab_size=40, model_type="bpe", eos_id=1, bos_id=-1, unk_id=0, pad_id=-1)
    return root / "spm.model"


def test_preprocessing_writes_what_the_reader_reads(tmp_path, spm_model):
    import sentencepiece

    texts = ["alpha beta gamma", "delta epsilon", "zeta eta theta alpha"]
    src = tmp_path / "c4.json"
    src.write_text("".join(json.dumps({"text": t, "url": "x"}) + "\n" for t in texts))
    assert tokenize_file([src], spm_model, tmp_path / "out" / "doc") == 3
    ds = IndexedDataset(tmp_path / "out" / "doc")
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    for i, text in enumerate(texts):
        assert ds[i].tolist() == sp.encode(text) + [sp.eos_id()]  # Megatron's --append-eod
        assert sp.decode(ds[i][:-1].tolist()) == text


def test_preprocessing_names_a_bad_line(tmp_path, spm_model):
    src = tmp_path / "bad.json"
    src.write_text('{"text": "alpha"}\n{"txt": "beta"}\n')
    with pytest.raises(ValueError, match=rf"{src}:2: expected a JSON object with a string 'text' field"):
        tokenize_file([src], spm_model, tmp_path / "doc")


def _written(tmp_path):
    prefix = tmp_path / "d"
    write_indexed(prefix, documents(), np.uint16)
    return prefix, *paths(prefix)


def test_truncated_idx_is_refused(tmp_path):
    prefix, _, idx = _written(tmp_path)
    idx.write_bytes(idx.read_bytes()[:-8])
    with pytest.raises(DataError, match=rf"{idx}: 274 bytes, but the header's 12 sequences and 13 doc_idx "
                                        r"entries need 282 \(truncated"):
        IndexedDataset(prefix)
    idx.write_bytes(b"MMID")
    with pytest.raises(DataError, match="shorter than the 34-byte header"):
        IndexedDataset(prefix)


def test_truncated_or_mismatched_bin_is_refused(tmp_path):
    prefix, bin_path, _ = _written(tmp_path)
    bin_path.write_bytes(bin_path.read_bytes()[:-2])
    with pytest.raises(DataError, match=rf"{bin_path}: .* bytes, but .* describes .* do not belong together"):
        IndexedDataset(prefix)
    other = tmp_path / "other"
    write_indexed(other, documents(seed=5), np.uint16)
    paths(other)[0].replace(bin_path)  # another dataset's .bin next to this .idx
    with pytest.raises(DataError, match="do not belong together"):
        IndexedDataset(prefix)


def test_bad_magic_dtype_and_pointers_are_named(tmp_path):
    prefix, _, idx = _written(tmp_path)
    good = idx.read_bytes()
    idx.write_bytes(b"NOTMMIDX\x00" + good[9:])
    with pytest.raises(DataError, match=r"magic .* \(not a Megatron mmap index\)"):
        IndexedDataset(prefix)
    idx.write_bytes(good[:17] + bytes([9]) + good[18:])
    with pytest.raises(DataError, match="dtype code 9"):
        IndexedDataset(prefix)
    pointers_at = 34 + 4 * 12
    idx.write_bytes(good[:pointers_at + 8] + struct.pack("<q", 7) + good[pointers_at + 16:])
    with pytest.raises(DataError, match="field 'pointers' entry 1 is 7"):
        IndexedDataset(prefix)
    with pytest.raises(DataError, match="does not exist"):
        IndexedDataset(tmp_path / "missing")


def test_samples_are_overlapping_windows_of_the_shuffled_document_stream(tmp_path):
    prefix, _, _ = _written(tmp_path)
    ds = IndexedDataset(prefix)
    seq_len, n = 16, 30  # more tokens than one epoch: the stream spans several epochs
    index = build_samples(ds.sizes, n, seq_len, seed=3)
    stream = np.concatenate([ds[d] for d in index.doc_order]).astype(np.int64)
    seen = set()
    for k in range(n):
        sample = gpt_sample(ds, index, k)
        j = int(index.shuffle[k])
        assert sample.tolist() == stream[j * seq_len: j * seq_len + seq_len + 1].tolist()
        seen.add(j)
    assert seen == set(range(n))
    first_epoch = index.doc_order[: len(ds)]
    assert sorted(first_epoch.tolist()) == list(range(len(ds)))  # each epoch is a permutation
    again = build_samples(ds.sizes, n, seq_len, seed=3)
    other = build_samples(ds.sizes, n, seq_len, seed=4)
    assert np.array_equal(again.shuffle, index.shuffle) and not np.array_equal(other.doc_order, index.doc_order)


def test_even_blend_alternates_and_counts_within_each_dataset():
    which, within = blend([0.5, 0.5], 8)
    assert which.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert within.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    which, _ = blend([0.75, 0.25], 400)
    assert abs((which == 1).mean() - 0.25) < 0.01


def megatron_blend(weights, num_samples):
    """Megatron's build_blending_indices (megatron/data/helpers.cpp), restated: sample i from the dataset with
    the largest weight x max(i, 1) - taken, the first on ties."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    which, within, counts = [], [], np.zeros(len(weights), dtype=np.int64)
    for i in range(num_samples):
        d = int(np.argmax(weights * max(i, 1) - counts))
        which.append(d)
        within.append(int(counts[d]))
        counts[d] += 1
    return np.array(which), np.array(within)


@pytest.mark.parametrize("weights", [[0.5, 0.5], [1, 1, 1], [0.75, 0.25], [0.2, 0.3, 0.5], [0.1, 0.9]])
def test_blend_is_megatrons_greedy_whichever_path_computes_it(weights):
    for got, expected in zip(blend(weights, 5000), megatron_blend(weights, 5000)):
        assert np.array_equal(got, expected)
