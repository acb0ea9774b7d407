"""A synthetic BERT phase-2 input, in NVIDIA's layouts: corpus, packed data, eval file and phase-1 checkpoint.

    python3 -m bert.synthetic DIR

`SyntheticLanguage` is a learnable token language. Its sequences are written
as variable-length shards (`varlength/`), packed with `bert.packing` into
`packed_data/`, plus a 2,000-sequence eval file; all through `bert.data`'s
writers, so the readers real runs use are the ones exercised. The real
benchmark starts phase 2 from `model.ckpt-28252.pt`, a BERT-large that
reached about 34% masked-LM accuracy in phase 1; the synthetic flow makes its
own starting point the same way: it trains the tiny model on the unpacked
shards for a fixed number of LAMB steps, stopping well short of the target,
and saves it as `{'model': state_dict}` under `phase1/model.ckpt-<steps>.pt`,
the layout `bert.train` loads. `SYNTHETIC.json` (common.synthetic) marks it.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bert import data
from bert.checkpoint import save_checkpoint
from bert.model import BertConfig, BertForPreTraining, pretraining_loss
from bert.optim import lamb_param_groups, warmup_poly_lr
from bert.packing import pack_shards
from common import synthetic
from common.lamb import LAMB
from common.precision import Precision
from common.step import TrainStep

PHASE1_STEPS = 450
PHASE1_BATCH = 32
PHASE1_LR = 2e-2
FP32_CPU = Precision("fp32", "cpu")


class SyntheticLanguage:
    """A learnable token language for the synthetic corpus.

    Ids: 0 [PAD], 1 [CLS], 2 [SEP], 3 [MASK], words 4..vocab-1. A document has
    a topic; within a topic each word has one preferred successor (a random
    permutation per topic), emitted with probability `follow`, otherwise a
    uniformly random word. A masked word is therefore predictable from its
    neighbours once the model knows the topic's successor map and infers the
    topic from the rest of the sequence — but not always (the random words),
    so accuracy stays below 1. The next-sentence task is learnable because a
    random second segment comes from a document of another topic.
    """

    PAD, CLS, SEP, MASK = 0, 1, 2, 3
    FIRST_WORD = 4

    def __init__(self, vocab_size: int, topics: int, follow: float, seed: int):
        self.vocab_size, self.follow = vocab_size, follow
        rng = np.random.default_rng(seed)
        self.words = np.arange(self.FIRST_WORD, vocab_size)
        self.successor = np.zeros((topics, vocab_size), dtype=np.int64)  # successor[topic, word]
        for t in range(topics):
            self.successor[t, self.words] = rng.permutation(self.words)
        self.topics = topics

    def walk(self, rng: np.random.Generator, topic: int, length: int) -> list[int]:
        follows = rng.random(length) < self.follow
        out = rng.integers(self.FIRST_WORD, self.vocab_size, length)  # the random words
        for i in range(1, length):
            if follows[i]:
                out[i] = self.successor[topic, out[i - 1]]
        return out.tolist()

    def sequence(self, rng: np.random.Generator, length: int, max_predictions: int) -> dict:
        """One pre-training sequence [CLS] A [SEP] B [SEP] of `length` tokens, masked as BERT does."""
        words = length - 3
        len_a = int(rng.integers(1, words))
        topic = int(rng.integers(self.topics))
        is_random = rng.random() < 0.5
        a = self.walk(rng, topic, len_a)
        b_topic = (topic + int(rng.integers(1, self.topics))) % self.topics if is_random else topic
        b = self.walk(rng, b_topic, words - len_a)
        tokens = [self.CLS, *a, self.SEP, *b, self.SEP]
        segments = [0] * (len_a + 2) + [1] * (words - len_a + 1)
        candidates = [i for i, t in enumerate(tokens) if t >= self.FIRST_WORD]
        count = min(max_predictions, max(1, round(0.15 * len(candidates))))
        positions = np.sort(rng.choice(candidates, size=count, replace=False))
        labels = [tokens[p] for p in positions]
        for p in positions:  # 80% [MASK], 10% random word, 10% unchanged
            r = rng.random()
            tokens[p] = self.MASK if r < 0.8 else int(rng.choice(self.words)) if r < 0.9 else tokens[p]
        return {"input_ids": tokens, "segment_ids": segments, "masked_lm_positions": positions.tolist(),
                "masked_lm_ids": labels, "next_sentence_label": int(is_random)}


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of the synthetic corpus (tiny-model scale)."""

    vocab_size: int = 128
    max_seq_len: int = 128
    max_predictions: int = 20
    topics: int = 2
    follow: float = 0.95
    train_shards: int = 8
    sequences_per_shard: int = 4000
    eval_sequences: int = 2_000  # the real eval set has 10,000; logged as eval_samples either way
    seed: int = 1234


def synthetic_lengths(rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
    """Half short (16..max/2), half long (max/2..max) sequences, so rows pack about 2 to 1."""
    short = rng.integers(16, max_len // 2 + 1, n)
    long = rng.integers(max_len // 2, max_len + 1, n)
    return np.where(rng.random(n) < 0.5, short, long)


def write_synthetic(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> None:
    """varlength/ training shards, packed_data/ (packed from them) and the eval file."""
    lang = SyntheticLanguage(spec.vocab_size, spec.topics, spec.follow, spec.seed)
    rng = np.random.default_rng(spec.seed + 1)
    shards = []
    for s in range(spec.train_shards):
        lengths = synthetic_lengths(rng, spec.sequences_per_shard, spec.max_seq_len)
        path = root / data.VARLENGTH_DIR / f"part_{s:05d}_of_{spec.train_shards:05d}.hdf5"
        data.write_varlength(path, [lang.sequence(rng, int(n), spec.max_predictions) for n in lengths])
        shards.append(path)
    pack_shards(shards, root / data.PACKED_DIR, max_seq_len=spec.max_seq_len, max_predictions=spec.max_predictions,
                seed=spec.seed)
    lengths = synthetic_lengths(rng, spec.eval_sequences, spec.max_seq_len)
    data.write_varlength(root / data.EVAL_FILE, [lang.sequence(rng, int(n), spec.max_predictions) for n in lengths])


def make_phase1_checkpoint(root: Path, spec: SyntheticSpec, steps: int = PHASE1_STEPS) -> Path:
    """The tiny model pre-trained, untimed, on the unpacked shards; see the module docstring."""
    torch.manual_seed(spec.seed)
    arch = dataclasses.replace(BertConfig.tiny(), dropout=0.0)
    assert (arch.vocab_size, arch.max_positions) == (spec.vocab_size, spec.max_seq_len)
    model = BertForPreTraining(arch)
    optimizer = LAMB(lamb_param_groups(model, 0.01), lr=PHASE1_LR, betas=(0.9, 0.999))
    stream = data.TrainStream(data.list_shards(root / data.VARLENGTH_DIR), batch_size=PHASE1_BATCH,
                              seq_len=spec.max_seq_len, max_predictions=spec.max_predictions, rank=0,
                              world_size=1, seed=spec.seed)
    step = TrainStep(model, optimizer, lambda batch: pretraining_loss(model, batch), precision=FP32_CPU,
                     device=torch.device("cpu"), count=lambda batch: len(batch["input_ids"]),
                     lr=lambda i: warmup_poly_lr(i + 1, base_lr=PHASE1_LR, warmup_steps=steps // 10,
                                                 start_warmup_step=0, total_steps=2 * steps))  # stop part-way down
    start = time.perf_counter()
    batches = iter(stream)
    for _ in range(steps):
        step(batches)
    loss = step.monitor.drain().mean_loss
    path = root / data.PHASE1_DIR / f"model.ckpt-{steps}.pt"
    save_checkpoint(model, path)
    print(f"phase 1: {steps} steps of batch {PHASE1_BATCH} in {time.perf_counter() - start:.1f} s, "
          f"mean loss {loss:.3f} -> {path}")
    return path


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> None:
    """The whole synthetic benchmark input, its marker last."""
    root = Path(root)
    write_synthetic(root, spec)
    checkpoint = make_phase1_checkpoint(root, spec)
    synthetic.write_marker(root, asdict(spec), phase1_checkpoint=str(checkpoint.relative_to(root)))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
