"""LibriSpeech in the MLPerf layout: 16 kHz WAV files, JSON manifests, the SentencePiece model.

    <root>/<split>-wav/<speaker>/<chapter>/<utterance>.wav
    <root>/librispeech-<split>-wav.json     [{"transcript": "lower case text",
                                              "files": [{"fname": "<split>-wav/...wav", "duration": s, ...}],
                                              "original_duration": s, "original_num_samples": n}, ...]
    <root>/sentencepieces/librispeech1023.model   (the only *.model there)

Training reads train-clean-100, train-clean-360 and train-other-500 and drops
utterances longer than 16.7 s (their `original_duration`, before speed
perturbation); evaluation reads dev-clean whole. `read_manifest` checks every
entry before a run starts — a missing key, a WAV file that is not there, a
transcript the tokenizer cannot encode without `<unk>`, a value of the wrong
type, a WAV file too small for its `num_samples` (empty or truncated: a stat,
no read) — naming the manifest and the entry; a WAV that is not readable audio
at 16 kHz, or whose sample count is not the entry's `num_samples`, is named when
it is read (mid-run: the run ends `aborted`).

`EpochBatches` is the reference's bucketing sampler (rnnt/pytorch/common/data/
dali/sampler.py): per epoch, the utterances sorted by duration and split into
`num_buckets` buckets (1: a plain shuffle), shuffled within each bucket, N mod
global batch of them dropped at random, the global batches shuffled, and rank r
given the r-th of every `world_size` utterances of each global batch. Each
epoch's order comes from (seed, epoch), the same on every rank.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rnnt.config import RULES, epoch_batches
from rnnt.features import prepare_audio

TRAIN_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500")
EVAL_SPLIT = "dev-clean"
TOKENIZER_DIR = "sentencepieces"  # exactly one *.model: librispeech1023.model for the real data
UNK = 0  # SentencePiece's <unk>; also the label padding


class DataError(ValueError):
    """A dataset file is missing, of the wrong kind, or corrupt."""


@dataclass(frozen=True)
class Utterance:
    path: Path
    transcript: str
    duration: float  # seconds, before speed perturbation
    tokens: tuple
    num_samples: int | None = None  # the manifest's; checked against the file when it is read


def manifest_path(root: Path, split: str) -> Path:
    return Path(root) / f"librispeech-{split}-wav.json"


def tokenizer_path(root: Path) -> Path:
    models = sorted((Path(root) / TOKENIZER_DIR).glob("*.model"))
    if len(models) != 1:
        raise DataError(f"{Path(root) / TOKENIZER_DIR}: expected exactly one SentencePiece *.model "
                        f"(librispeech1023.model), found {len(models)}")
    return models[0]


class Tokenizer:
    """The SentencePiece model: transcripts <-> label ids 0..N-1 (blank, the joint's last output, is N)."""

    def __init__(self, path: Path):
        import sentencepiece

        if not Path(path).is_file():
            raise DataError(f"{path}: {'a directory' if Path(path).is_dir() else 'missing'}; expected a SentencePiece "
                            "model file")
        if Path(path).stat().st_size == 0:
            raise DataError(f"{path}: empty (0 bytes); expected a SentencePiece model")
        self.path = Path(path)
        try:
            self.model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:
            raise DataError(f"{path}: not a SentencePiece model ({e})") from e

    def __len__(self) -> int:
        return self.model.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.model.encode(text, out_type=int)

    def decode(self, ids) -> str:
        return self.model.decode(list(ids))


def read_manifest(root: Path, split: str, tokenizer: Tokenizer, max_duration: float | None = None) -> list[Utterance]:
    """The split's utterances (at most `max_duration` seconds when given), checked; see the module docstring."""
    path = manifest_path(root, split)
    if not path.is_file():
        raise DataError(f"{path}: {'a directory' if path.is_dir() else 'missing'}; expected the {split} manifest "
                        "file (python3 -m rnnt.preprocess writes it)")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not readable json ({e}); truncated or corrupt") from e
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of utterances, got {type(entries).__name__}")
    utterances = []
    for i, entry in enumerate(entries):
        try:
            transcript, duration, file = entry["transcript"], entry["original_duration"], entry["files"][-1]
            fname, num_samples = file["fname"], file["num_samples"]
        except (KeyError, IndexError, TypeError) as e:
            raise DataError(f"{path}: entry {i} lacks {e}; expected transcript, files[].fname, "
                            "files[].num_samples and original_duration") from None
        for name, value, ok, what in (
                ("transcript", transcript, isinstance(transcript, str), "a string"),
                ("files[].fname", fname, isinstance(fname, str), "a path"),
                ("original_duration", duration, _is_number(duration), "seconds"),
                ("files[].num_samples", num_samples, _is_number(num_samples) and num_samples == int(num_samples)
                 and num_samples >= 0, "a sample count")):
            if not ok:
                raise DataError(f"{path}: entry {i}: {name} {value!r}; expected {what}")
        if max_duration is not None and duration > max_duration:
            continue
        wav = Path(root) / fname
        check_wav_size(path, i, wav, file)
        tokens = tokenizer.encode(transcript)
        if UNK in tokens or not tokens:
            raise DataError(f"{path}: entry {i} ({fname}): transcript {transcript!r} encodes to "
                            f"{'nothing' if not tokens else '<unk>'} with {tokenizer.path}")
        utterances.append(Utterance(wav, transcript, float(duration), tuple(tokens), int(num_samples)))
    return utterances


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


WAV_HEADER = 44  # the smallest PCM WAV header: RIFF, fmt and data chunk headers


def check_wav_size(manifest: Path, i: int, wav: Path, file: dict) -> None:
    """A manifest entry's WAV is a file that can hold the samples the entry promises (a stat, no read): a file
    cut short or empty is named before a run starts; what it holds is checked when it is read (`read_audio`)."""
    try:
        size = wav.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{manifest}: entry {i}: {wav} missing") from None
    if wav.is_dir():
        raise DataError(f"{wav}: a directory; expected a WAV file ({manifest.name} entry {i})")
    if wav.suffix != ".wav":
        return
    channels, bits = file.get("channels", 1), file.get("bitdepth", 16)
    need = WAV_HEADER + int(file["num_samples"]) * channels * bits // 8
    if size < need:
        raise DataError(f"{wav}: {size} bytes; expected at least {need} (a {WAV_HEADER}-byte header and "
                        f"num_samples {file['num_samples']} x {channels} channel(s) x {bits} bits, {manifest.name} "
                        f"entry {i}): truncated (python3 -m rnnt.preprocess rewrites it)")


def read_training(root: Path, tokenizer: Tokenizer) -> list[Utterance]:
    """The three training splits' utterances of at most the rules' 16.7 s."""
    return [u for split in TRAIN_SPLITS for u in read_manifest(root, split, tokenizer, max_duration=RULES.max_duration)]


def write_manifest(root: Path, split: str, entries: list[dict]) -> Path:
    """The split's manifest, written whole or not at all (a temporary file renamed into place)."""
    path = manifest_path(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=2))
    tmp.replace(path)
    return path


def manifest_entry(root: Path, wav: Path, transcript: str) -> dict:
    """An utterance as the reference's converter describes it (the keys of sox's file info, the path relative)."""
    import soundfile

    info = soundfile.info(str(wav))
    duration = info.frames / info.samplerate
    return {"transcript": transcript,
            "files": [{"channels": info.channels, "sample_rate": float(info.samplerate), "bitdepth": 16,
                       "bitrate": float(16 * info.samplerate * info.channels), "duration": duration,
                       "num_samples": info.frames, "encoding": "Signed Integer PCM", "silent": False,
                       "fname": str(wav.relative_to(root)), "speed": 1}],
            "original_duration": duration, "original_num_samples": info.frames}


def read_audio(path: Path, num_samples: int | None = None) -> np.ndarray:
    """A mono float32 16 kHz waveform (of `num_samples` samples, when given: the manifest's count)."""
    import soundfile

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise DataError(f"{path}: not a readable audio file ({e})") from e
    if rate != RULES.sample_rate:
        raise DataError(f"{path}: {rate} Hz; expected {RULES.sample_rate} Hz (the preprocessing resamples)")
    if num_samples is not None and len(audio) != num_samples:
        raise DataError(f"{path}: {len(audio)} samples, but its manifest entry says num_samples {num_samples}; "
                        "a truncated file or a stale manifest (python3 -m rnnt.preprocess rewrites both)")
    return audio.mean(axis=1)  # downmix, as the reference's reader


class EpochBatches(Sampler):
    """This rank's batches of (utterance index, epoch); see the module docstring."""

    def __init__(self, durations: list[float], batch_size: int, world_size: int, rank: int, seed: int,
                 num_buckets: int = 1):
        self.durations, self.batch_size, self.world_size, self.rank = durations, batch_size, world_size, rank
        self.seed, self.num_buckets, self.epoch = seed, num_buckets, 1
        self.global_batch = batch_size * world_size
        if len(durations) < self.global_batch:
            raise ValueError(f"{len(durations)} utterances cannot fill one global batch of {self.global_batch}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return epoch_batches(len(self.durations), self.batch_size, self.world_size)

    @property
    def samples_per_epoch(self) -> int:
        return len(self) * self.global_batch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(batches, global batch) utterance indices of `epoch`, the same on every rank."""
        rng = np.random.default_rng((self.seed, epoch))
        buckets = np.array_split(np.argsort(self.durations, kind="stable"), self.num_buckets)
        order = np.concatenate([rng.permutation(bucket) for bucket in buckets])
        drop = len(order) % self.global_batch
        order = np.delete(order, rng.choice(len(order), drop, replace=False)) if drop else order
        batches = order.reshape(-1, self.global_batch)
        rng.shuffle(batches, axis=0)
        return batches

    def __iter__(self):
        for batch in self.epoch_order(self.epoch):
            yield [(int(i), self.epoch) for i in batch[self.rank::self.world_size]]


class TrainUtterances(Dataset):
    """Items (index, epoch): the perturbed, trimmed waveform and its label ids; draws from (seed, epoch, index)."""

    def __init__(self, utterances: list[Utterance], seed: int):
        self.utterances, self.seed = utterances, seed

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, item: tuple[int, int]):
        index, epoch = item
        utterance = self.utterances[index]
        rng = np.random.default_rng((self.seed, epoch, index))
        return prepare_audio(read_audio(utterance.path, utterance.num_samples), rng), utterance.tokens


def eval_shard(utterances: list[Utterance], rank: int, world_size: int) -> list[int]:
    """This rank's dev-set indices: every `world_size`-th utterance in order of duration, so that a batch of
    them pads to little (the WER is a sum over utterances, whatever their order); each utterance on one rank."""
    by_duration = sorted(range(len(utterances)), key=lambda i: (utterances[i].duration, i))
    return by_duration[rank::world_size]


class EvalUtterances(Dataset):
    def __init__(self, utterances: list[Utterance]):
        self.utterances = utterances

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int):
        utterance = self.utterances[index]
        return prepare_audio(read_audio(utterance.path, utterance.num_samples), None), utterance.tokens


def collate(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio (B, S) zero-padded, sample counts, labels (B, U) padded with 0, label counts)."""
    audio, tokens = zip(*items)
    lengths = torch.tensor([len(a) for a in audio])
    label_lengths = torch.tensor([len(t) for t in tokens])
    batch = torch.zeros(len(audio), int(lengths.max()))
    labels = torch.full((len(tokens), int(label_lengths.max())), UNK, dtype=torch.long)
    for i, (a, t) in enumerate(zip(audio, tokens)):
        batch[i, :len(a)] = torch.from_numpy(a)
        labels[i, :len(t)] = torch.tensor(t)
    return batch, lengths, labels, label_lengths

