"""LibriSpeech manifests and WAVs, the tokenizer's checks, the reference's epoch sampler, collation and WER."""
import json

import numpy as np
import pytest
import sentencepiece
import soundfile
import torch

from rnnt.data import (DataError, EpochBatches, Tokenizer, Utterance, collate, eval_shard, manifest_path, read_audio,
                       read_manifest)
from rnnt.evaluate import error_counts

WORDS = "the cat sat on a mat and then ran far away from every dog in town".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    text = root / "text.txt"
    rng = np.random.default_rng(0)
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 5)) for _ in range(300)))
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(root / "m"), vocab_size=30,
                                             character_coverage=1.0, bos_id=-1, eos_id=-1, model_type="unigram")
    return Tokenizer(root / "m.model")


def write_split(root, entries):
    manifest_path(root, "dev-clean").write_text(json.dumps(entries))


def entry(fname, transcript="the cat sat", duration=1.0):
    return {"transcript": transcript,
            "files": [{"fname": fname, "duration": duration, "num_samples": int(duration * 16000), "speed": 1}],
            "original_duration": duration, "original_num_samples": int(duration * 16000)}


def test_manifest_entries_are_read_filtered_by_duration_and_checked(tmp_path, tokenizer):
    (tmp_path / "dev-clean-wav").mkdir()
    for name in ("a", "b"):
        soundfile.write(tmp_path / f"dev-clean-wav/{name}.wav", np.zeros(16000, np.float32), 16000)
    write_split(tmp_path, [entry("dev-clean-wav/a.wav"), entry("dev-clean-wav/b.wav", duration=17.0)])
    utterances = read_manifest(tmp_path, "dev-clean", tokenizer, max_duration=16.7)
    assert [u.path.name for u in utterances] == ["a.wav"]
    assert tokenizer.decode(utterances[0].tokens) == "the cat sat"
    write_split(tmp_path, [entry("dev-clean-wav/a.wav"), {"transcript": "x", "files": []}])
    with pytest.raises(DataError, match="entry 1 lacks"):
        read_manifest(tmp_path, "dev-clean", tokenizer)
    write_split(tmp_path, [entry("dev-clean-wav/missing.wav")])
    with pytest.raises(DataError, match="entry 0: .*missing.wav missing"):
        read_manifest(tmp_path, "dev-clean", tokenizer)
    write_split(tmp_path, [entry("dev-clean-wav/a.wav", transcript="zebra quiz")])
    with pytest.raises(DataError, match="encodes to <unk>"):
        read_manifest(tmp_path, "dev-clean", tokenizer)
    write_split(tmp_path, [{**entry("dev-clean-wav/a.wav"), "files": [{"fname": "dev-clean-wav/a.wav"}]}])
    with pytest.raises(DataError, match="entry 0 lacks 'num_samples'"):
        read_manifest(tmp_path, "dev-clean", tokenizer)
    manifest_path(tmp_path, "dev-clean").write_text("[{")
    with pytest.raises(DataError, match="not readable json"):
        read_manifest(tmp_path, "dev-clean", tokenizer)


def test_audio_must_be_16_khz_and_is_downmixed(tmp_path):
    stereo = np.stack([np.full(100, 0.5), np.full(100, -0.25)], axis=1).astype(np.float32)
    soundfile.write(tmp_path / "s.wav", stereo, 16000)
    assert np.allclose(read_audio(tmp_path / "s.wav"), 0.125, atol=1e-4)
    soundfile.write(tmp_path / "r.wav", stereo, 8000)
    with pytest.raises(DataError, match="r.wav: 8000 Hz; expected 16000"):
        read_audio(tmp_path / "r.wav")
    assert len(read_audio(tmp_path / "s.wav", num_samples=100)) == 100
    with pytest.raises(DataError, match="s.wav: 100 samples, but its manifest entry says num_samples 160"):
        read_audio(tmp_path / "s.wav", num_samples=160)  # a truncated file, or a stale manifest
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000")
    with pytest.raises(DataError, match="bad.wav: not a readable audio file"):
        read_audio(tmp_path / "bad.wav")


def test_epoch_batches_drop_the_remainder_and_split_each_global_batch_over_ranks():
    durations = list(np.random.default_rng(0).uniform(1, 16, 103))
    ranks = [EpochBatches(durations, 5, 2, rank, seed=3) for rank in range(2)]
    assert len(ranks[0]) == 10 and ranks[0].samples_per_epoch == 100  # 103 // 10 global batches
    for sampler in ranks:
        sampler.set_epoch(2)
    batches = [list(s) for s in ranks]
    seen = [i for r in batches for batch in r for i, epoch in batch]
    assert len(seen) == len(set(seen)) == 100 and all(e == 2 for r in batches for b in r for _, e in b)
    order = ranks[0].epoch_order(2)
    assert [i for i, _ in batches[1][0]] == order[0, 1::2].tolist()
    assert not np.array_equal(order, ranks[0].epoch_order(3))
    bucketed = EpochBatches(durations, 5, 2, 0, seed=3, num_buckets=2).epoch_order(1)
    assert bucketed.shape == (10, 10)


def test_the_dev_set_is_split_over_ranks_in_order_of_duration_each_utterance_once():
    durations = np.random.default_rng(1).uniform(1, 35, 11).round(1)
    utterances = [Utterance(f"{i}.wav", "the cat", float(d), (1, 2), int(d * 16000)) for i, d in enumerate(durations)]
    shards = [eval_shard(utterances, rank, 3) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    assert [len(shard) for shard in shards] == [4, 4, 3]
    for shard in shards:
        assert np.all(np.diff(durations[shard]) >= 0)
    assert eval_shard(utterances, 0, 1) == sorted(range(11), key=lambda i: (durations[i], i))


def test_collate_pads_audio_and_labels():
    audio, lengths, labels, label_lengths = collate([(np.ones(5, np.float32), (3, 4)), (np.ones(2, np.float32), (7,))])
    assert audio.shape == (2, 5) and lengths.tolist() == [5, 2] and audio[1, 2:].sum() == 0
    assert labels.tolist() == [[3, 4], [7, 0]] and label_lengths.tolist() == [2, 1]
    assert torch.is_tensor(audio)


@pytest.mark.parametrize("hypothesis, reference, edits", [
    ("the cat sat", "the cat sat", 0),
    ("the sat", "the cat sat", 1),  # a deletion
    ("the mat sat", "the cat sat", 1),  # a substitution
    ("a the cat sat on", "the cat sat", 2),  # two insertions
    ("", "the cat", 2),
])
def test_word_errors_are_torchmetrics_levenshtein_counts(hypothesis, reference, edits):
    assert error_counts([hypothesis], [reference]) == (edits, len(reference.split()))


def test_the_error_rate_is_total_edits_over_total_words_not_a_mean_of_rates():
    assert error_counts(["the cat sat", "dog"], ["the cat sat on a mat", "cat"]) == (4, 7)  # 4/7, not (1/2 + 1)/2
