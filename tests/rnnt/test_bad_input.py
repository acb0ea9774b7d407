"""Bad input, table-driven: each corruption of a copy of a tiny synthetic LibriSpeech set fails naming the file and
what was expected — before run_start where the manifests, the tokenizer or a WAV's size show it, mid-run with
run_stop `aborted` where only a WAV's contents do (read when its utterance is first drawn).

The set is `rnnt.synthetic`'s writers at a small size (36 training utterances over the three splits, 16 of
dev-clean: the session's set always writes the rules' 2,703 dev-clean utterances, ~30 s), copied whole for each
case (~2 MB). Cases of the task that do not apply: none; "wrong dtype/shape" are a manifest value of the wrong
type and a manifest that is not a list (a WAV's own dtype and channels are read as float32 and downmixed, as the
reference does), and a WAV at 8 kHz (its header read mid-run).
"""
import json
import re
import shutil
import time

import numpy as np
import pytest
import soundfile

from common.config import RuntimeConfig, SystemConfig, load_configs
from rnnt import data, train
from rnnt.config import RNNTConfig
from rnnt.synthetic import SyntheticSpec, lexicon, train_tokenizer, write_split
from tests.conftest import RNNT_CPU_CONFIG
from tests.faults import assert_caught, record

SEED = 3
SPLIT = "train-clean-360"  # its entry 0 is an ordinary utterance (train-clean-100's is the 17 s one training drops)


@pytest.fixture(scope="module")
def tiny_librispeech(tmp_path_factory):
    root = tmp_path_factory.mktemp("rnnt-tiny")
    spec = SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    phones, pronunciations = lexicon(rng, spec)
    transcripts = []
    for n, split in enumerate(data.TRAIN_SPLITS):
        transcripts += write_split(root, split, 12, rng, spec, phones, pronunciations, long_one=n == 0)
    write_split(root, data.EVAL_SPLIT, 16, rng, spec, phones, pronunciations)
    train_tokenizer(root, transcripts, spec)
    return root


def entries(root, split=SPLIT):
    return json.loads(data.manifest_path(root, split).read_text())


def set_entry(root, field, value, split=SPLIT):
    items = entries(root, split)
    items[0][field] = value
    data.write_manifest(root, split, items)
    return data.manifest_path(root, split)


def wav(root, split=SPLIT, i=0):
    return root / entries(root, split)[i]["files"][-1]["fname"]


def tokenizer(root):
    return data.tokenizer_path(root)


def first_drawn(root):
    """The WAV of the run's first training utterance (epoch 1 of `EpochBatches` at SEED, one process)."""
    cfg = load_configs(RNNT_CPU_CONFIG, SystemConfig, RuntimeConfig, RNNTConfig)[2]
    utterances = data.read_training(root, data.Tokenizer(data.tokenizer_path(root)))
    sampler = data.EpochBatches([u.duration for u in utterances], cfg.batch_size, 1, 0, SEED, cfg.num_buckets)
    return utterances[sampler.epoch_order(1)[0][0]].path


def truncated_wav(root):
    path = wav(root)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return rf"{path}: \d+ bytes; expected at least \d+ \(a 44-byte header and num_samples \d+ x 1 channel\(s\) x " \
        rf"16 bits, {data.manifest_path(root, SPLIT).name} entry 0\): truncated"


def truncated_manifest(root):
    path = data.manifest_path(root, data.EVAL_SPLIT)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return rf"{path}: not readable json \(.*\); truncated or corrupt"


def truncated_tokenizer(root):
    path = tokenizer(root)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return rf"{path}: not a SentencePiece model \(.*could not parse ModelProto"


def zero_byte_wav(root):
    path = wav(root)
    path.write_bytes(b"")
    return rf"{path}: 0 bytes; expected at least \d+ .*: truncated"


def zero_byte_tokenizer(root):
    path = tokenizer(root)
    path.write_bytes(b"")
    return rf"{path}: empty \(0 bytes\); expected a SentencePiece model"


def wrong_dtype(root):
    path = set_entry(root, "original_duration", "1.5 s")
    return rf"{path}: entry 0: original_duration '1.5 s'; expected seconds"


def wrong_shape(root):
    path = data.manifest_path(root, data.EVAL_SPLIT)
    path.write_text(json.dumps({str(i): e for i, e in enumerate(entries(root, data.EVAL_SPLIT))}))
    return rf"{path}: expected a list of utterances, got dict"


def out_of_range(root):
    # A transcript the tokenizer has no pieces for: it would train on <unk> (id 0), outside the real labels.
    path = set_entry(root, "transcript", "jack back")
    return rf"{path}: entry 0 \(.*\): transcript 'jack back' encodes to <unk> with {tokenizer(root)}"


def missing_eval_split(root):
    path = data.manifest_path(root, data.EVAL_SPLIT)
    path.unlink()
    return rf"{path}: missing; expected the dev-clean manifest file"


def missing_train_split(root):
    path = wav(root)
    shutil.rmtree(root / f"{SPLIT}-wav")
    return rf"{data.manifest_path(root, SPLIT)}: entry 0: {path} missing"


def wav_directory(root):
    # The tests run as root, who reads any file whatever its mode: a directory where the file should be instead.
    path = wav(root)
    path.unlink()
    path.mkdir()
    return rf"{path}: a directory; expected a WAV file \({data.manifest_path(root, SPLIT).name} entry 0\)"


def manifest_directory(root):
    path = data.manifest_path(root, SPLIT)
    path.unlink()
    path.mkdir()
    return rf"{path}: a directory; expected the {SPLIT} manifest file"


def corrupt_wav(root):
    path = first_drawn(root)
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))  # the size its manifest promises
    return rf"{path}: not a readable audio file \(.*Format not recognised"


def wav_at_8_khz(root):
    path = first_drawn(root)
    audio, _ = soundfile.read(path, dtype="float32")
    soundfile.write(path, audio, 8000, subtype="PCM_16")
    return rf"{path}: 8000 Hz; expected 16000 Hz"


UP_FRONT = "data opened before run_start (Tokenizer, read_manifest)"
MID_RUN = "first read mid-run (TrainUtterances, 1 loader worker)"
CASES = [("truncated WAV", truncated_wav, UP_FRONT), ("truncated manifest", truncated_manifest, UP_FRONT),
         ("truncated tokenizer", truncated_tokenizer, UP_FRONT), ("zero-byte WAV", zero_byte_wav, UP_FRONT),
         ("zero-byte tokenizer", zero_byte_tokenizer, UP_FRONT), ("wrong dtype manifest value", wrong_dtype, UP_FRONT),
         ("wrong shape manifest", wrong_shape, UP_FRONT), ("out-of-range token (<unk>)", out_of_range, UP_FRONT),
         ("eval split missing", missing_eval_split, UP_FRONT),
         ("train split WAVs missing", missing_train_split, UP_FRONT),
         ("WAV a directory", wav_directory, UP_FRONT), ("manifest a directory", manifest_directory, UP_FRONT),
         ("corrupt WAV", corrupt_wav, MID_RUN), ("WAV at 8 kHz", wav_at_8_khz, MID_RUN)]


@pytest.mark.parametrize("case, corrupt, where", CASES, ids=[c[0] for c in CASES])
def test_a_corrupt_dataset_fails_naming_the_file_and_what_was_expected(case, corrupt, where, tmp_path,
                                                                        tiny_librispeech, monkeypatch):
    root = tmp_path / "librispeech"
    shutil.copytree(tiny_librispeech, root)
    expected = corrupt(root)
    log = tmp_path / "run.log"
    monkeypatch.setenv("EPOCH", "1")  # the mid-run cases fail at their first batch: at most an epoch
    start = time.monotonic()
    with pytest.raises(data.DataError, match=expected) as error:
        train.main(["--data-dir", str(root), "--config", str(RNNT_CPU_CONFIG), "--seed", str(SEED),
                    "--log-file", str(log)])
    seconds = time.monotonic() - start
    assert_caught(log, before_run_start=where == UP_FRONT)
    # With loader workers, PyTorch re-raises as "Caught DataError in DataLoader worker process 0" + the worker's
    # traceback; the message is its line naming the file.
    message = next(line for line in str(error.value).splitlines() if re.search(expected, line))
    message = message.removeprefix(f"{data.DataError.__module__}.{data.DataError.__name__}: ")
    record(case, "rnnt", where, seconds, None if where == UP_FRONT else log,
           message, root)
