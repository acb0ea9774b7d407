"""A synthetic C4 for the CPU smoke run: a language whose log-perplexity floor is known.

Text is a first-order Markov chain over W made-up words: after a word, the
document ends with probability `q`, otherwise one of its K successors follows
(a fixed random set per word) with probabilities `p` (a decaying profile). A
new document starts with a uniformly random word. Each word becomes exactly one
SentencePiece token (checked), and preprocessing appends the end-of-document
token, so the token stream is itself first-order Markov: no model can beat the
true transition probabilities, and their log-loss over the validation samples —
`entropy_floor` — is a hard floor for the eval log-perplexity. The profile is
chosen so that the floor is a little above 2.6 nats: the checker's window
2.6 < log-ppl <= 2.69 can be reached but not overshot.

`python3 -m gpt3.synthetic DIR` writes DIR/raw/*.json (JSON lines, as C4 is
distributed), trains DIR/spm.model on it, runs `gpt3.preprocess` into
DIR/preproc_data/ with C4's file names, makes the initial checkpoint
DIR/ckpt<steps>-consumed_samples=0/ by a short untimed pre-training, and
records the floor in SYNTHETIC.json (common.synthetic).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import torch

from common import synthetic
from common.precision import Precision
from common.step import TrainStep
from gpt3.checkpoint import save_checkpoint
from gpt3.data import TRAIN_FILES, VALID_FILE, IndexedDataset, TrainSamples, validation_windows
from gpt3.model import GPT, GPTConfig, LMLoss
from gpt3.preprocess import load_tokenizer, tokenize_file


@dataclass(frozen=True)
class LanguageSpec:
    words: int = 64
    successors: int = 16
    decay: float = 0.13  # successor i has weight exp(-decay * i): 2.61 nats per word
    end_probability: float = 0.002  # documents of ~500 words
    train_documents: int = 400  # per training file
    valid_documents: int = 48
    seq_len: int = 2048
    seed: int = 4321


PRETRAIN_STEPS = 200
PRETRAIN_BATCH = 4
PRETRAIN_LR = 3e-3


class MarkovLanguage:
    def __init__(self, spec: LanguageSpec):
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        letters = list("bdfgklmnprstvz")
        vowels = list("aeiou")
        names: set[str] = set()
        while len(names) < spec.words:
            names.add("".join(rng.choice(letters) + rng.choice(vowels) for _ in range(int(rng.integers(2, 4)))))
        self.vocab = sorted(names)
        self.successors = np.stack([rng.choice(spec.words, spec.successors, replace=False)
                                    for _ in range(spec.words)])
        weights = np.exp(-spec.decay * np.arange(spec.successors))
        self.profile = weights / weights.sum()

    def document(self, rng: np.random.Generator) -> list[int]:
        """Word ids of one document (the end-of-document token is added by preprocessing)."""
        words = [int(rng.integers(self.spec.words))]
        while rng.random() >= self.spec.end_probability:
            words.append(int(self.successors[words[-1], rng.choice(self.spec.successors, p=self.profile)]))
        return words

    def text(self, words: list[int]) -> str:
        return " ".join(self.vocab[w] for w in words)

    def transition_matrix(self) -> np.ndarray:
        """P[next | previous] over W words + end-of-document (index W)."""
        w, q = self.spec.words, self.spec.end_probability
        probs = np.zeros((w + 1, w + 1))
        for word in range(w):
            probs[word, self.successors[word]] += (1 - q) * self.profile
            probs[word, w] = q
        probs[w, :w] = 1.0 / w  # a new document starts with any word
        return probs


def entropy_floor(lang: MarkovLanguage, windows: np.ndarray, word_of_token: dict[int, int], eod: int) -> float:
    """Mean -log P_true(next token | previous token) over every predicted token of the eval windows."""
    probs = lang.transition_matrix()
    states = np.vectorize(lambda t: lang.spec.words if t == eod else word_of_token[int(t)])(windows)
    return float(-np.log(probs[states[:, :-1], states[:, 1:]]).mean())


def synthesize(root: Path, spec: LanguageSpec = LanguageSpec(), pretrain_steps: int = PRETRAIN_STEPS) -> dict:
    root = Path(root)
    import sentencepiece

    lang = MarkovLanguage(spec)
    rng = np.random.default_rng(spec.seed + 1)
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files, texts = {}, {}
    for name, count in ((TRAIN_FILES[0], spec.train_documents), (TRAIN_FILES[1], spec.train_documents),
                        (VALID_FILE, spec.valid_documents)):
        texts[name] = [lang.text(lang.document(rng)) for _ in range(count)]
        files[name] = raw / f"{name}.json"
        files[name].write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[name]))
    (raw / "spm_train.txt").write_text("\n".join(texts[TRAIN_FILES[0]]) + "\n")
    # pad 0, eos 1, unk 2, no bos: the layout of the MLPerf C4 tokenizer
    # (a word model, so that each made-up word is one piece; the real tokenizer is BPE)
    sentencepiece.SentencePieceTrainer.train(
        input=str(raw / "spm_train.txt"), model_prefix=str(root / "spm"), model_type="word",
        vocab_size=spec.words + 3, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    sp = load_tokenizer(root / "spm.model")
    word_of_token = {}
    for w, word in enumerate(lang.vocab):
        pieces = sp.encode(word)
        if len(pieces) != 1:
            raise RuntimeError(f"synthetic word {word!r} tokenizes into {len(pieces)} pieces, not 1")
        word_of_token[pieces[0]] = w
    out = root / "preproc_data"
    for name, src in files.items():
        tokenize_file([src], root / "spm.model", out / name)
    windows = validation_windows(IndexedDataset(out / VALID_FILE), spec.seq_len)
    if len(windows) == 0:
        raise RuntimeError(f"the synthetic validation set holds fewer than {spec.seq_len + 1} tokens")
    samples = len(windows)
    floor = entropy_floor(lang, windows, word_of_token, sp.eos_id())
    checkpoint = make_initial_checkpoint(root, pretrain_steps)
    info = synthetic.write_marker(root, asdict(spec), vocab_size=sp.get_piece_size(), eval_samples=samples,
                                  entropy_floor=floor, checkpoint=checkpoint.name)
    print(f"wrote synthetic GPT-3 data to {root}: vocab {info['vocab_size']}, {samples} eval samples, "
          f"log-perplexity floor {floor:.4f}")
    return info


def make_initial_checkpoint(root: Path, steps: int = PRETRAIN_STEPS) -> Path:
    """The synthetic flow's stand-in for `ckpt4000-consumed_samples=0`: the CPU model pre-trained,
    untimed, for `steps` Adam steps at a constant LR, saved in the reference layout with its moments."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.cpu())
    optimizer = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR, betas=(0.9, 0.95), eps=1e-8,
                                  weight_decay=0.1)
    train = TrainSamples([IndexedDataset(root / "preproc_data" / n) for n in TRAIN_FILES],
                         steps * PRETRAIN_BATCH, model.cfg.seq_len, seed=12345)
    loss_fn = LMLoss()
    step = TrainStep(model, optimizer, lambda tokens: loss_fn(model(tokens[:, :-1]), tokens[:, 1:]),
                     precision=Precision("fp32", "cpu"), device=torch.device("cpu"), count=len,
                     before_update=lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
    batches = (train.batch(range(i * PRETRAIN_BATCH, (i + 1) * PRETRAIN_BATCH)).long() for i in range(steps))
    for _ in range(steps):
        step(batches)
    loss = step.monitor.drain().mean_loss
    path = root / f"ckpt{steps}-consumed_samples=0"
    save_checkpoint(model, optimizer, path, step=steps)
    print(f"pre-trained the CPU model for {steps} steps (mean loss {loss:.3f}) -> {path}")
    return path


def main(argv=None) -> int:
    return synthetic.command(__doc__, LanguageSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
