"""Raw LibriSpeech (FLAC + .trans.txt) -> the MLPerf layout, on a tiny fake LibriSpeech written here."""
import json
import shutil

import numpy as np
import pytest
import sentencepiece
import soundfile

from rnnt import preprocess
from rnnt.data import EVAL_SPLIT, TRAIN_SPLITS, Tokenizer, manifest_path, read_manifest, tokenizer_path

WORDS = "the cat sat on a mat and then ran far away from every dog in town".split()
VOCAB = 30  # what the few transcripts here support; the real set's is 1023


def write_split(raw, split, seed, first_text=None, rate=16000, subtype="PCM_16"):
    """Two speakers, a chapter each, two utterances a chapter: {id: (int16 samples, normalised transcript)}."""
    rng = np.random.default_rng(seed)
    utterances = {}
    for speaker, chapter in ((100 + seed, 200 + seed), (300 + seed, 400 + seed)):
        folder = raw / "LibriSpeech" / split / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for u in range(2):
            uid = f"{speaker}-{chapter}-{u:04d}"
            audio = rng.integers(-20000, 20000, int(rng.integers(1600, 4800)), dtype=np.int16)
            soundfile.write(folder / f"{uid}.flac", audio, rate, subtype=subtype, format="FLAC")
            text = " ".join(rng.choice(WORDS, int(rng.integers(3, 8)))).upper()
            if first_text is not None and not utterances:
                text = first_text
            lines.append(f"{uid} {text}")
            utterances[uid] = audio, text.lower().strip()
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return utterances


def write_raw(raw):
    """The four splits; the first training transcript is unusual (the normalisation), the next says every word."""
    firsts = ("HE'S  GONE AWAY  \t", " ".join(WORDS).upper(), None, None)
    return {split: write_split(raw, split, n, first) for n, (split, first) in enumerate(zip(preprocess.SPLITS,
                                                                                          firsts))}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("librispeech")
    raw = write_raw(root / "raw")
    preprocess.preprocess(root / "raw", root / "out", workers=2, vocab_size=VOCAB, progress_every=3)
    return root / "out", raw


def test_wavs_hold_the_flac_samples_bit_for_bit_and_the_manifests_read_back(prepared):
    out, raw = prepared
    tokenizer = Tokenizer(tokenizer_path(out))
    assert tokenizer.path == out / "sentencepieces" / f"librispeech{VOCAB}.model" and len(tokenizer) == VOCAB
    assert (out / "sentencepieces" / f"librispeech{VOCAB}.vocab").is_file()
    assert not preprocess.transcripts_path(out).exists()
    for split, utterances in raw.items():
        entries = json.loads(manifest_path(out, split).read_text())
        read = read_manifest(out, split, tokenizer)
        assert [u.transcript for u in read] == [t for _, t in utterances.values()]
        for entry, utterance, (uid, (audio, _)) in zip(entries, read, utterances.items()):
            speaker, chapter, _ = uid.split("-")
            assert entry["files"][0]["fname"] == f"{split}-wav/{speaker}/{chapter}/{uid}.wav"
            assert utterance.path == out / entry["files"][0]["fname"]
            wav, rate = soundfile.read(utterance.path, dtype="int16")
            info = soundfile.info(utterance.path)
            assert (rate, info.format, info.subtype, info.channels) == (16000, "WAV", "PCM_16", 1)
            assert wav.dtype == np.int16 and np.array_equal(wav, audio)  # bit for bit
            assert entry["original_num_samples"] == len(audio) and utterance.duration == len(audio) / 16000
            assert entry["files"][0]["speed"] == 1 and len(entry["files"]) == 1  # no --speed in the reference


def test_transcripts_are_lower_cased_and_stripped_and_nothing_else(prepared):
    out, _ = prepared
    first = json.loads(manifest_path(out, TRAIN_SPLITS[0]).read_text())[0]["transcript"]
    assert first == "he's  gone away"  # the reference's .lower().strip(): apostrophe and inner spaces kept
    assert preprocess.normalise("MR. SMITH'S  DOG\n") == "mr. smith's  dog"


def test_the_sentencepiece_model_is_the_one_the_reference_options_train(prepared):
    out, _ = prepared
    prefix = preprocess.model_prefix(out, VOCAB)
    ours = {ext: prefix.with_name(prefix.name + ext).read_bytes() for ext in (".model", ".vocab")}
    text = preprocess.transcripts_path(out)  # as create_sentencepieces.sh's jq: each training transcript, a line
    transcripts = [e["transcript"] for split in TRAIN_SPLITS for e in json.loads(manifest_path(out, split).read_text())]
    text.write_text("".join(t + "\n" for t in transcripts))
    try:
        sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(prefix), vocab_size=VOCAB,
                                                 character_coverage=1.0, bos_id=-1, eos_id=-1, model_type="unigram")
    finally:
        text.unlink()
    for ext, data in ours.items():
        assert prefix.with_name(prefix.name + ext).read_bytes() == data, ext
    model = sentencepiece.SentencePieceProcessor(model_file=str(prefix) + ".model")
    assert (model.bos_id(), model.eos_id(), model.unk_id()) == (-1, -1, 0)


def mtimes(out):
    return {p: p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_second_run_keeps_everything_and_an_interrupted_one_redoes_only_what_is_missing(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    preprocess.preprocess(tmp_path / "raw", out, vocab_size=VOCAB, progress_every=3)
    printed = capsys.readouterr().out
    assert "[dev-clean] 3/4 utterances (3 written, 0 kept)" in printed and "min left" in printed
    assert f"[sentencepieces] {preprocess.model_prefix(out, VOCAB)}.model: written" in printed
    before = mtimes(out)
    preprocess.preprocess(tmp_path / "raw", out, vocab_size=VOCAB)
    printed = capsys.readouterr().out
    assert mtimes(out) == before
    assert all(f"[{split}] {manifest_path(out, split)}: kept (4 utterances)" in printed for split in raw)
    assert "[sentencepieces]" in printed and f": kept ({VOCAB} pieces)" in printed

    # Stopped during dev-clean: its manifest not yet written, one WAV missing, one truncated.
    uids = list(raw[EVAL_SPLIT])
    wavs = [out / json.loads(manifest_path(out, EVAL_SPLIT).read_text())[i]["files"][0]["fname"] for i in (0, 1)]
    manifest_path(out, EVAL_SPLIT).unlink()
    wavs[0].unlink()
    wavs[1].write_bytes(wavs[1].read_bytes()[:-200])
    preprocess.preprocess(tmp_path / "raw", out, splits=[EVAL_SPLIT], vocab_size=VOCAB)
    printed = capsys.readouterr().out
    assert f"[{EVAL_SPLIT}] 4/4 utterances (2 written, 2 kept)" in printed
    after = mtimes(out)
    assert {p for p in after if after[p] != before.get(p)} == {*wavs, manifest_path(out, EVAL_SPLIT)}
    for uid, wav in zip(uids, wavs):
        assert np.array_equal(soundfile.read(wav, dtype="int16")[0], raw[EVAL_SPLIT][uid][0])
    assert f": kept ({VOCAB} pieces)" in printed  # no training manifest changed

    # A training split redone: the model is trained again.
    manifest_path(out, TRAIN_SPLITS[1]).unlink()
    preprocess.preprocess(tmp_path / "raw", out, splits=[TRAIN_SPLITS[1]], vocab_size=VOCAB)
    assert ".model: written" in capsys.readouterr().out


def break_missing_split(split_dir):
    shutil.rmtree(split_dir)
    return split_dir, "missing"


def break_unlisted_flac(split_dir):
    flac = next(split_dir.rglob("*.flac"))
    extra = flac.with_name(flac.stem[:-4] + "0099.flac")
    shutil.copy(flac, extra)
    return extra, "listed in no transcript"


def break_missing_flac(split_dir):
    flac = sorted(split_dir.rglob("*.flac"))[1]
    flac.unlink()
    trans = next(flac.parent.glob("*.trans.txt"))
    return f"{trans}:2: {flac.stem} has no {flac.name}", ""


def break_empty_transcript(split_dir):
    trans = sorted(split_dir.rglob("*.trans.txt"))[0]
    lines = trans.read_text().splitlines()
    trans.write_text(f"{lines[0].split()[0]}   \n{lines[1]}\n")
    return f"{trans}:1: {lines[0].split()[0]}", "empty transcript"


def break_corrupt_flac(split_dir):
    flac = sorted(split_dir.rglob("*.flac"))[0]
    flac.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    return flac, "not a readable FLAC file"


def break_truncated_flac(split_dir):
    flac = sorted(split_dir.rglob("*.flac"))[0]
    flac.write_bytes(flac.read_bytes()[:-1000])
    return flac, "truncated"


def break_sample_rate(split_dir):
    flac = sorted(split_dir.rglob("*.flac"))[0]
    soundfile.write(flac, np.zeros(800, np.int16), 8000, subtype="PCM_16", format="FLAC")
    return flac, "8000 Hz; expected 16000 Hz"


def break_bit_depth(split_dir):
    flac = sorted(split_dir.rglob("*.flac"))[0]
    soundfile.write(flac, np.zeros(800, np.int16), 16000, subtype="PCM_24", format="FLAC")
    return flac, "expected 16-bit"


@pytest.mark.parametrize("damage", [break_missing_split, break_unlisted_flac, break_missing_flac,
                                    break_empty_transcript, break_corrupt_flac, break_truncated_flac,
                                    break_sample_rate, break_bit_depth], ids=lambda f: f.__name__[6:])
def test_broken_raw_data_is_refused_naming_the_file(tmp_path, capsys, damage):
    write_split(tmp_path / "raw", EVAL_SPLIT, 0)
    culprit, why = damage(tmp_path / "raw" / "LibriSpeech" / EVAL_SPLIT)
    assert preprocess.main([str(tmp_path / "raw"), str(tmp_path / "out"), "--splits", EVAL_SPLIT,
                            "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"rnnt.preprocess: {culprit}") and why in printed, printed
    assert not manifest_path(tmp_path / "out", EVAL_SPLIT).exists()
