"""A small, learnable LibriSpeech stand-in in the MLPerf layout: 16 kHz WAVs, JSON manifests, a SentencePiece model.

    python3 -m rnnt.synthetic DIR

A "language" of 16 words, each pronounced as a fixed sequence of 2-4 "phones"
(a phone: two sinusoids of its own pair of frequencies, 60-100 ms with a
raised-cosine envelope); an utterance says 1-4 words with short pauses, in a
voice of its own (all frequencies x 0.9-1.1, its own loudness) over background
noise. Training utterances are spread over the three training splits (plus one
of 17 s, which the 16.7 s rule drops); dev-clean holds the rules' 2,703. WAVs
and manifests go through `rnnt.data.write_manifest` / `manifest_entry`, the
writers the preprocessing uses; the SentencePiece model is trained on the
training transcripts with the reference's options (unigram, character
coverage 1, no bos/eos), at the vocabulary this small language allows.
`SYNTHETIC.json` (common.synthetic) marks the set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common import synthetic
from rnnt.config import RULES
from rnnt.data import EVAL_SPLIT, TOKENIZER_DIR, TRAIN_SPLITS, Tokenizer, manifest_entry, write_manifest

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "yes", "no", "up", "down",
         "left", "right")


@dataclass(frozen=True)
class SyntheticSpec:
    train_utterances: int = 2048
    phones: int = 12
    min_words: int = 1
    max_words: int = 4
    vocab_size: int = 64  # asked of SentencePiece; it keeps what the language supports
    seed: int = 0


def lexicon(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, dict]:
    """(phone frequency pairs (phones, 2) in Hz, word -> its phone indices)."""
    low, high = rng.choice(np.arange(300, 1500, 60), spec.phones, replace=False), \
        rng.choice(np.arange(1600, 3600, 100), spec.phones, replace=False)
    pronunciations = {}
    while len(pronunciations) < len(WORDS):  # distinct phone sequences
        seq = tuple(int(p) for p in rng.integers(0, spec.phones, int(rng.integers(2, 5))))
        if seq not in pronunciations.values():
            pronunciations[WORDS[len(pronunciations)]] = seq
    return np.stack([low, high], axis=1).astype(np.float64), pronunciations


def say(words: list[str], phones: np.ndarray, pronunciations: dict, rng: np.random.Generator) -> np.ndarray:
    rate = RULES.sample_rate
    pitch, loudness = rng.uniform(0.9, 1.1), rng.uniform(0.1, 0.4)
    pieces = [np.zeros(int(rng.uniform(0.05, 0.2) * rate))]
    for word in words:
        for phone in pronunciations[word]:
            n = int(rng.uniform(0.06, 0.10) * rate)
            t = np.arange(n) / rate
            wave = sum(np.sin(2 * np.pi * f * pitch * t + rng.uniform(0, 2 * np.pi)) for f in phones[phone])
            pieces.append(loudness * 0.5 * wave * np.sin(np.pi * np.arange(n) / n) ** 2)
        pieces.append(np.zeros(int(rng.uniform(0.04, 0.12) * rate)))
    audio = np.concatenate(pieces)
    audio += rng.normal(0, loudness * 0.02, audio.size)
    return np.clip(audio, -1, 1).astype(np.float32)


def write_split(root: Path, split: str, count: int, rng: np.random.Generator, spec: SyntheticSpec, phones,
                pronunciations, long_one: bool = False) -> list[str]:
    import soundfile

    entries, transcripts = [], []
    for i in range(count):
        words = list(rng.choice(WORDS, int(rng.integers(spec.min_words, spec.max_words + 1))))
        audio = say(words, phones, pronunciations, rng)
        if long_one and i == 0:  # longer than the rules' 16.7 s: training must drop it
            words = list(rng.choice(WORDS, 50))
            audio = np.concatenate([say(words, phones, pronunciations, rng), np.zeros(17 * RULES.sample_rate,
                                                                                        np.float32)])
        wav = root / f"{split}-wav" / f"{i % 40}" / f"{i % 7}" / f"{i % 40}-{i % 7}-{i:04d}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(wav), audio, RULES.sample_rate, subtype="PCM_16")
        transcript = " ".join(words)
        entries.append(manifest_entry(root, wav, transcript))
        transcripts.append(transcript)
    write_manifest(root, split, entries)
    return transcripts


def train_tokenizer(root: Path, transcripts: list[str], spec: SyntheticSpec) -> Path:
    import sentencepiece

    folder = root / TOKENIZER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "transcripts.txt"
    text.write_text("\n".join(transcripts) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "synthetic"), vocab_size=spec.vocab_size, character_coverage=1.0,
        bos_id=-1, eos_id=-1, model_type="unigram", hard_vocab_limit=False, minloglevel=2)
    text.unlink()
    return folder / "synthetic.model"


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """The three training splits, dev-clean, the tokenizer, then the marker."""
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    phones, pronunciations = lexicon(rng, spec)
    transcripts = []
    for n, split in enumerate(TRAIN_SPLITS):
        count = spec.train_utterances // len(TRAIN_SPLITS) + (n < spec.train_utterances % len(TRAIN_SPLITS))
        transcripts += write_split(root, split, count, rng, spec, phones, pronunciations, long_one=n == 0)
    write_split(root, EVAL_SPLIT, RULES.eval_samples, rng, spec, phones, pronunciations)
    model = train_tokenizer(root, transcripts, spec)
    pieces = len(Tokenizer(model))
    return synthetic.write_marker(root, asdict(spec), words=list(WORDS), tokenizer=str(model.relative_to(root)),
                                  tokenizer_pieces=pieces, train_utterances=spec.train_utterances,
                                  eval_utterances=RULES.eval_samples)


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
