"""Raw LibriSpeech -> the MLPerf layout (`rnnt.data`), as the reference's preprocess_librispeech.sh does it.

    python3 -m rnnt.preprocess RAW_DIR OUT_DIR [--splits SPLIT ...] [--workers N]

RAW_DIR holds the extracted tarballs: `LibriSpeech/<split>/<speaker>/<chapter>/`
with `<speaker>-<chapter>-<utt>.flac` and `<speaker>-<chapter>.trans.txt`
(lines `<speaker>-<chapter>-<utt> UPPER CASE TEXT`). The splits are
train-clean-100, train-clean-360, train-other-500 and dev-clean unless
--splits names others (the reference's script also converts dev-other,
test-clean and test-other, which MLPerf training does not read).

Reference: mlcommons/training retired_benchmarks/rnnt/pytorch. Its
scripts/preprocess_librispeech.sh runs utils/convert_librispeech.py once per
split with --input_dir, --dest_dir <split>-wav and --output_json
librispeech-<split>-wav.json only: no --speed (so no speed-perturbed copies,
only `files[0]` at speed 1), no --target_sr (the input's rate is kept: 16 kHz),
no --overwrite (WAVs already there are kept). Per transcript line,
utils/convert_librispeech.py splits the line at its first space
(`line.partition(' ')`: the id, then the text) and looks the id's .flac up
next to the .trans.txt; utils/preprocessing_utils.py stores the text
`.lower().strip()` (nothing else: apostrophes and inner spaces stay as they
are) and converts with sox (`speed 1`, `rate <input rate>`, both no-ops that
sox drops), i.e. the FLAC's 16-bit samples copied into a 16-bit PCM WAV. Here
soundfile does that copy (int16 in, int16 out: bit for bit), and
`rnnt.data.manifest_entry` / `write_manifest` write the entries (sox's file
info keys, `fname` relative to OUT_DIR: `<split>-wav/<speaker>/<chapter>/<id>.wav`),
the writers the synthetic set uses. The reference walks the folders in file
system order (glob); here the .trans.txt files are sorted, lines in file order.

Then scripts/create_sentencepieces.sh: every training transcript, one per line
(`jq -r '.[]["transcript"]' librispeech-train-*-wav.json`: train-clean-100,
train-clean-360, train-other-500 in that order), and
`sentencepiece.SentencePieceTrainer.train(input=..., model_prefix='librispeech1023',
vocab_size=1023, character_coverage=1.0, bos_id=-1, eos_id=-1, model_type='unigram')`,
called here with the same options, writing OUT_DIR/sentencepieces/librispeech1023.model
and .vocab (the reference copies them to /datasets/sentencepieces, beside its
LibriSpeech folder; `rnnt.data` wants them inside OUT_DIR). It runs when all three
training manifests are in OUT_DIR.

Long on the whole dataset (281,241 training utterances, about 960 h): a line
every 1,000 utterances and at the end of each split, with the time left. Resumable: a WAV
already there that is a 16 kHz 16-bit WAV with the FLAC's frame count is kept
(each is written to a temporary name and renamed); a split whose manifest
(written whole, the same way) lists exactly the raw split's utterances and
transcripts, every WAV present, is kept as it is; the SentencePiece model is
kept when it is newer than every training manifest and its transcript file
(removed once training ends) is gone. Refused, naming the file: a missing split
folder, a .flac in no transcript, a transcript line whose .flac is missing, an
empty transcript, a FLAC soundfile cannot read (corrupt, truncated), one not at
16 kHz or not 16-bit.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path

from rnnt.config import RULES
from rnnt.data import EVAL_SPLIT, TOKENIZER_DIR, TRAIN_SPLITS, manifest_entry, manifest_path, write_manifest

SPLITS = (*TRAIN_SPLITS, EVAL_SPLIT)  # what rnnt.data reads
LIBRISPEECH_SPLITS = (*SPLITS, "dev-other", "test-clean", "test-other")
VOCAB_SIZE = 1023
PROGRESS_EVERY = 1000  # utterances


class PreprocessError(RuntimeError):
    """The raw data cannot yield the MLPerf dataset."""


def normalise(text: str) -> str:
    """The reference's transcript (utils/preprocessing_utils.py: `data['transcript'].lower().strip()`)."""
    return text.lower().strip()


def split_utterances(raw_dir: Path, out_dir: Path, split: str) -> list[tuple[Path, Path, str]]:
    """(flac, wav, normalised transcript) of every utterance of the split, the transcripts checked against the
    .flac files (utils/convert_librispeech.py's build_input_arr, with the checks it lacks)."""
    split_dir = Path(raw_dir) / "LibriSpeech" / split
    if not split_dir.is_dir():
        raise PreprocessError(f"{split_dir}: missing; expected the extracted {split} tarball "
                              f"(<speaker>/<chapter>/*.flac and *.trans.txt) under {Path(raw_dir) / 'LibriSpeech'}")
    transcripts = sorted(split_dir.rglob("*.trans.txt"))
    if not transcripts:
        raise PreprocessError(f"{split_dir}: no <speaker>-<chapter>.trans.txt files")
    utterances, seen = [], set()
    for trans in transcripts:
        with open(trans, encoding="utf-8") as f:  # lines as the reference reads them, "\n" kept until strip()
            lines = list(f)
        for lineno, line in enumerate(lines, 1):
            if not line.strip():  # a blank line (none in LibriSpeech; the reference would fail on "\n.flac")
                continue
            utt_id, _, text = line.partition(" ")
            utt_id = utt_id.strip()
            flac = trans.parent / f"{utt_id}.flac"
            if not normalise(text):
                raise PreprocessError(f"{trans}:{lineno}: {utt_id} has an empty transcript")
            if not flac.is_file():
                raise PreprocessError(f"{trans}:{lineno}: {utt_id} has no {flac.name} ({flac} missing)")
            if flac in seen:
                raise PreprocessError(f"{trans}:{lineno}: {utt_id} listed twice")
            seen.add(flac)
            wav = Path(out_dir) / f"{split}-wav" / flac.parent.relative_to(split_dir) / f"{flac.stem}.wav"
            utterances.append((flac, wav, normalise(text)))
    unlisted = sorted(set(split_dir.rglob("*.flac")) - seen)
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise PreprocessError(f"{unlisted[0]}: listed in no transcript{more}; expected a line "
                              f"'{unlisted[0].stem} TEXT' in a .trans.txt of {unlisted[0].parent}")
    return utterances


def _info(path: Path):
    import soundfile

    try:
        return soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError):
        return None


def convert(job: tuple[Path, Path, Path, str]) -> tuple[bool, dict]:
    """(kept, manifest entry) of one utterance: its FLAC copied into a 16-bit PCM WAV unless that WAV is whole."""
    import soundfile

    root, flac, wav, transcript = job
    try:
        info = soundfile.info(str(flac))
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise PreprocessError(f"{flac}: not a readable FLAC file ({e}); a corrupt or truncated download?") from None
    if info.samplerate != RULES.sample_rate:
        raise PreprocessError(f"{flac}: {info.samplerate} Hz; expected {RULES.sample_rate} Hz (LibriSpeech's rate)")
    if info.subtype != "PCM_16":
        raise PreprocessError(f"{flac}: {info.subtype_info}; expected 16-bit samples (LibriSpeech's)")
    have = _info(wav) if wav.is_file() else None
    kept = have is not None and (have.format, have.subtype, have.samplerate, have.channels, have.frames) == (
        "WAV", "PCM_16", info.samplerate, info.channels, info.frames)
    if not kept:
        try:
            audio, _ = soundfile.read(str(flac), dtype="int16", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError) as e:
            raise PreprocessError(f"{flac}: not a readable FLAC file ({e}); a corrupt or truncated download?") from None
        if len(audio) != info.frames:
            raise PreprocessError(f"{flac}: {len(audio)} samples read of the {info.frames} its header announces; "
                                  "a truncated or corrupt download?")
        wav.parent.mkdir(parents=True, exist_ok=True)
        tmp = wav.with_name(wav.name + ".tmp")
        soundfile.write(str(tmp), audio, info.samplerate, subtype="PCM_16", format="WAV")
        tmp.replace(wav)
    return kept, manifest_entry(root, wav, transcript)


def _results(jobs: list, workers: int):
    if workers <= 1:
        yield from map(convert, jobs)
        return
    with multiprocessing.Pool(workers) as pool:  # ordered, as the reference's Pool.imap
        yield from pool.imap(convert, jobs, chunksize=16)


def manifest_matches(out_dir: Path, split: str, utterances: list[tuple[Path, Path, str]]) -> bool:
    """The split's manifest is there, lists these utterances with these transcripts, and every WAV exists."""
    path = manifest_path(out_dir, split)
    try:
        entries = json.loads(path.read_text())
        listed = [(e["files"][-1]["fname"], e["transcript"]) for e in entries]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    expected = [(str(wav.relative_to(out_dir)), transcript) for _, wav, transcript in utterances]
    return listed == expected and all(wav.is_file() for _, wav, _ in utterances)


def preprocess_split(raw_dir: Path, out_dir: Path, split: str, workers: int = 1,
                     progress_every: int = PROGRESS_EVERY) -> Path:
    """One split's WAVs and manifest (module docstring); returns the manifest."""
    out_dir = Path(out_dir)
    utterances = split_utterances(raw_dir, out_dir, split)
    path = manifest_path(out_dir, split)
    if manifest_matches(out_dir, split, utterances):
        print(f"[{split}] {path}: kept ({len(utterances)} utterances)", flush=True)
        return path
    jobs = [(out_dir, flac, wav, transcript) for flac, wav, transcript in utterances]
    entries, written, started = [], 0, time.monotonic()
    for n, (kept, entry) in enumerate(_results(jobs, workers), 1):
        entries.append(entry)
        written += not kept
        if n % progress_every == 0 or n == len(jobs):
            elapsed = time.monotonic() - started
            left = elapsed / written * (len(jobs) - n) if written else 0.0
            hours = sum(e["original_duration"] for e in entries) / 3600
            print(f"[{split}] {n}/{len(jobs)} utterances ({written} written, {n - written} kept), {hours:.1f} h "
                  f"of audio; {elapsed / 60:.1f} min so far, ~{left / 60:.1f} min left", flush=True)
    write_manifest(out_dir, split, entries)
    print(f"[{split}] {path}: written ({len(entries)} utterances)", flush=True)
    return path


def transcripts_path(out_dir: Path) -> Path:
    """The training transcripts, one per line (the reference's /tmp/txt.txt); removed once the model is trained."""
    return Path(out_dir) / TOKENIZER_DIR / "train-transcripts.txt"


def model_prefix(out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    return Path(out_dir) / TOKENIZER_DIR / f"librispeech{vocab_size}"


def train_tokenizer(out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """scripts/create_sentencepieces.sh on the training manifests in `out_dir`; returns the .model."""
    import sentencepiece

    out_dir = Path(out_dir)
    manifests = [manifest_path(out_dir, split) for split in TRAIN_SPLITS]
    missing = [str(m) for m in manifests if not m.is_file()]
    if missing:
        raise PreprocessError(f"{', '.join(missing)}: missing; the SentencePiece model is trained on the "
                              f"transcripts of all of {', '.join(TRAIN_SPLITS)}")
    prefix, text = model_prefix(out_dir, vocab_size), transcripts_path(out_dir)
    model, vocab = prefix.with_name(prefix.name + ".model"), prefix.with_name(prefix.name + ".vocab")
    newest = max(m.stat().st_mtime_ns for m in manifests)
    if model.is_file() and vocab.is_file() and not text.exists() and model.stat().st_mtime_ns >= newest:
        try:
            pieces = sentencepiece.SentencePieceProcessor(model_file=str(model)).get_piece_size()
        except (RuntimeError, OSError):
            pieces = None
        if pieces == vocab_size:
            print(f"[sentencepieces] {model}: kept ({pieces} pieces)", flush=True)
            return model
    lines = []
    for manifest in manifests:
        try:
            lines += [entry["transcript"] + "\n" for entry in json.loads(manifest.read_text())]
        except (ValueError, KeyError, TypeError) as e:
            raise PreprocessError(f"{manifest}: not a manifest with transcripts ({e!r})") from None
    text.parent.mkdir(parents=True, exist_ok=True)
    text.write_text("".join(lines), encoding="utf-8")
    print(f"[sentencepieces] training on {len(lines)} transcripts ({text}), vocabulary {vocab_size}", flush=True)
    started = time.monotonic()
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=str(text), model_prefix=str(prefix), vocab_size=vocab_size, character_coverage=1.0,
            bos_id=-1, eos_id=-1, model_type="unigram")
    except RuntimeError as e:
        raise PreprocessError(f"{text}: SentencePiece training failed ({e})") from None
    text.unlink()
    print(f"[sentencepieces] {model}: written in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return model


def preprocess(raw_dir: Path, out_dir: Path, splits=SPLITS, workers: int = 1, vocab_size: int = VOCAB_SIZE,
               progress_every: int = PROGRESS_EVERY) -> Path | None:
    """Every split, then the SentencePiece model when all training manifests are there; returns the model."""
    out_dir = Path(out_dir)
    if not Path(raw_dir).is_dir():
        raise PreprocessError(f"{raw_dir}: not a directory; expected the folder holding LibriSpeech/<split>/")
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in splits:
        if split not in LIBRISPEECH_SPLITS:
            raise PreprocessError(f"{split}: not a LibriSpeech split ({', '.join(LIBRISPEECH_SPLITS)})")
    for split in splits:
        preprocess_split(raw_dir, out_dir, split, workers, progress_every)
    if not all(manifest_path(out_dir, split).is_file() for split in TRAIN_SPLITS):
        print(f"[sentencepieces] skipped: needs the manifests of {', '.join(TRAIN_SPLITS)} in {out_dir}", flush=True)
        return None
    return train_tokenizer(out_dir, vocab_size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the folder holding LibriSpeech/<split>/")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the MLPerf layout is written here")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=LIBRISPEECH_SPLITS, metavar="SPLIT",
                        help=f"default: {' '.join(SPLITS)}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes converting audio (default: one per CPU, as the reference)")
    args = parser.parse_args(argv)
    try:
        preprocess(args.raw_dir, args.out_dir, args.splits, args.workers)
    except PreprocessError as e:
        print(f"rnnt.preprocess: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
