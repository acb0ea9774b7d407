"""Word error rate of the EMA weights on dev-clean: greedy decoding, total word edits / total reference words.

The edits and words are torchmetrics' `WordErrorRate` counts (its `errors`
and `total` states: word-level Levenshtein distance, reference words). Each
rank decodes its share of the utterances; the two sums are all-reduced, so the
rate is over the whole set exactly. Hypotheses and references are both
decoded from label ids by the tokenizer (the reference compares
`sp.decode(labels)`, not the raw transcript), and split on whitespace.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn
# at import, before init_start: importing torchmetrics takes ~2 s on 2 cores, which inside the first
# evaluation would count toward the time to train
from torchmetrics.text import WordErrorRate

from common import dist
from rnnt.config import RULES
from rnnt.data import Tokenizer
from rnnt.features import Features
from rnnt.model import RNNT, greedy_decode


class EMA:
    """ema = decay x ema + (1 - decay) x weights, after every optimizer step, over the whole state dict (the
    reference's, no bias correction); `model` is what evaluation decodes with."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.source = decay, model
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for ema, value in zip(self.model.state_dict().values(), self.source.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                ema.copy_(value)


def error_counts(hypotheses: list[str], references: list[str]) -> tuple[int, int]:
    """(word edits, reference words) of a batch of transcripts, by torchmetrics' WordErrorRate."""
    metric = WordErrorRate()
    metric.update(hypotheses, references)
    return int(metric.errors), int(metric.total)


def word_error_rate(model: RNNT, features: Features, batches: Iterable, tokenizer: Tokenizer,
                    device: torch.device) -> float:
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # edits, reference words
    for audio, lengths, labels, label_lengths in batches:
        x, frames = features(audio, lengths)
        hypotheses = greedy_decode(model, x, frames, max_symbols=RULES.max_symbols)
        references = [tokenizer.decode(label[:n]) for label, n in zip(labels.tolist(), label_lengths.tolist())]
        edits, words = error_counts([tokenizer.decode(h) for h in hypotheses], references)
        totals += torch.tensor([edits, words], dtype=totals.dtype, device=device)
    totals = dist.all_reduce_sum(totals)
    if totals[1] == 0:
        raise RuntimeError("no reference words were scored")
    return float(totals[0] / totals[1])
