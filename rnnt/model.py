"""The MLPerf RNN-T (the reference's rnnt/model.py, v3.0) with its loss and greedy decoder.

Encoder: 2 LSTM layers (1024) over 240 features (80 mels stacked x3, every third
frame), time stacking x2, 3 LSTM layers (1024). Prediction network: an embedding
of the 1023 SentencePiece labels (blank has none; a zero vector stands for the
start) and 2 LSTM layers (512). Joint: both projected to 512, summed, ReLU,
dropout, a linear layer to 1024 logits (blank = 1023, the last). Dropout follows
every LSTM layer (0.1 encoder, 0.3 prediction) and the joint ReLU (0.3).

Initialisation as the reference: LSTM weights PyTorch's U(+-1/sqrt(H)), the
input-hidden forget-gate bias set to 1 and the hidden-hidden one to 0, then every
LSTM weight and bias multiplied by `weights_init_scale` (0.5 in the reference's
train.py and NVIDIA's logs: a forget bias of 0.5); linear and embedding layers
keep PyTorch's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class RNNTShape:
    num_labels: int = 1023  # SentencePiece pieces; the joint has one more output, blank
    in_features: int = 240  # 80 mels x 3 stacked frames
    enc_hidden: int = 1024
    enc_pre_layers: int = 2
    enc_post_layers: int = 3
    stack_time: int = 2
    pred_hidden: int = 512
    pred_layers: int = 2
    joint_hidden: int = 512
    enc_dropout: float = 0.1
    pred_dropout: float = 0.3
    joint_dropout: float = 0.3

    @classmethod
    def debug(cls, num_labels: int = 1023) -> "RNNTShape":
        """The same network at CPU width (one pre- and post-LSTM layer, 128/64 units)."""
        return cls(num_labels=num_labels, enc_hidden=128, enc_pre_layers=1, enc_post_layers=1, pred_hidden=64,
                   pred_layers=1, joint_hidden=64)

    @property
    def blank(self) -> int:
        return self.num_labels


class LSTMStack(nn.Module):
    """`nn.LSTM` with dropout after every layer (the last too), initialised as the reference."""

    def __init__(self, input_size: int, hidden: int, layers: int, dropout: float, init_scale: float,
                 forget_gate_bias: float = 1.0):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    p[hidden:2 * hidden] = forget_gate_bias  # gate order i, f, g, o
                elif name.startswith("bias_hh"):
                    p[hidden:2 * hidden] = 0.0  # the reference's hidden_hidden_bias_scale 0
            for p in self.lstm.parameters():
                p.mul_(init_scale)

    def forward(self, x: torch.Tensor, state=None):
        x, state = self.lstm(x, state)
        return self.dropout(x), state


def stack_time(x: torch.Tensor, lengths: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, B, F) -> (ceil(T / factor), B, factor x F): frame t with the next factor - 1 (zeros past the end)."""
    shifted = [x] + [torch.cat([x[i:], x.new_zeros((i, *x.shape[1:]))]) for i in range(1, factor)]
    return torch.cat(shifted, dim=2)[::factor], (lengths + factor - 1) // factor


class RNNT(nn.Module):
    def __init__(self, shape: RNNTShape = RNNTShape(), init_scale: float = 0.5):
        super().__init__()
        s = self.shape = shape
        self.pre_rnn = LSTMStack(s.in_features, s.enc_hidden, s.enc_pre_layers, s.enc_dropout, init_scale)
        self.post_rnn = LSTMStack(s.stack_time * s.enc_hidden, s.enc_hidden, s.enc_post_layers, s.enc_dropout,
                                  init_scale)
        self.embed = nn.Embedding(s.num_labels, s.pred_hidden)
        self.dec_rnn = LSTMStack(s.pred_hidden, s.pred_hidden, s.pred_layers, s.pred_dropout, init_scale)
        self.joint_enc = nn.Linear(s.enc_hidden, s.joint_hidden)
        self.joint_pred = nn.Linear(s.pred_hidden, s.joint_hidden)
        self.joint_net = nn.Sequential(nn.ReLU(), nn.Dropout(s.joint_dropout), nn.Linear(s.joint_hidden,
                                                                                        s.num_labels + 1))

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, B, 240) spliced features -> (B, T', enc_hidden) and T' lengths."""
        x, _ = self.pre_rnn(features)
        x, lengths = stack_time(x, lengths, self.shape.stack_time)
        x, _ = self.post_rnn(x)
        return x.transpose(0, 1), lengths

    def predict(self, labels: torch.Tensor | None, state=None, start: bool = True):
        """(B, U) labels -> (B, U + 1, pred_hidden) with the start vector first (`start`), and the LSTM state.
        `labels` None: the start vector alone (greedy decoding's first step)."""
        if labels is None:
            y = self.embed.weight.new_zeros((state[0].shape[1] if state else 1, 1, self.shape.pred_hidden))
        else:
            y = self.embed(labels)
            if start:
                y = torch.cat([y.new_zeros((y.shape[0], 1, y.shape[2])), y], dim=1)
        g, state = self.dec_rnn(y.transpose(0, 1), state)
        return g.transpose(0, 1), state

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(B, T, enc) and (B, U, pred) -> (B, T, U, labels + 1) logits."""
        return self.joint_net(self.joint_enc(f)[:, :, None] + self.joint_pred(g)[:, None])

    def forward(self, features, feature_lengths, labels):
        f, f_lengths = self.encode(features, feature_lengths)
        g, _ = self.predict(labels)
        return self.joint(f, g), f_lengths


def build_rnnt(shape: RNNTShape = RNNTShape(), init_scale: float = 0.5) -> RNNT:
    return RNNT(shape, init_scale)


def rnnt_loss(logits: torch.Tensor, logit_lengths: torch.Tensor, labels: torch.Tensor, label_lengths: torch.Tensor,
              blank: int, implementation: str = "torchaudio") -> torch.Tensor:
    """The transducer loss summed over each utterance, averaged over the batch (warp-transducer's and apex's
    'mean', as the reference and NVIDIA use it); float32, logits (the log-softmax is inside). `implementation`
    "apex": apex.contrib.transducer's TransducerLoss, NVIDIA's v3.0 GPU kernel (rnnt/loss.py there), imported
    only then (TRANSDUCER_LOSS=apex)."""
    t_max = int(logit_lengths.max())  # the kernels want T == max length and U == max label length + 1
    x = logits[:, :t_max, :int(label_lengths.max()) + 1].float()
    if implementation == "apex":
        try:
            from apex.contrib.transducer import TransducerLoss
        except ImportError as e:
            raise RuntimeError("TRANSDUCER_LOSS=apex: apex.contrib.transducer is not importable (apex built "
                               f"without --transducer?): {e}; use TRANSDUCER_LOSS=torchaudio") from e
        return TransducerLoss(packed_input=False)(x, labels.int(), logit_lengths.int(), label_lengths.int(),
                                                  blank).mean()
    from torchaudio.functional import rnnt_loss as transducer_loss  # only training and its tests need torchaudio

    return transducer_loss(x, labels.int(), logit_lengths.int(), label_lengths.int(), blank=blank,
                           reduction="mean")


@torch.no_grad()
def greedy_decode(model: RNNT, features: torch.Tensor, lengths: torch.Tensor, max_symbols: int = 300,
                  max_per_step: int = 30) -> list[list[int]]:
    """Greedy transducer decoding of a batch, each utterance as the reference decodes it alone: at every
    encoder frame, emit the argmax label and feed it to the prediction network until blank (at most
    `max_per_step` per frame); an utterance stops at `max_symbols` labels (NVIDIA's cap; the rules' 300)."""
    f, f_lengths = model.encode(features, lengths)
    batch, blank = f.shape[0], model.shape.blank
    g, state = model.predict(None, None)
    g, state = g.expand(batch, -1, -1).contiguous(), tuple(s.expand(-1, batch, -1).contiguous() for s in state)
    hypotheses = [[] for _ in range(batch)]
    counts = torch.zeros(batch, dtype=torch.long, device=f.device)
    for t in range(f.shape[1]):
        active = (t < f_lengths) & (counts < max_symbols)
        for _ in range(max_per_step):
            if not bool(active.any()):
                break
            labels = model.joint(f[:, t:t + 1], g)[:, 0, 0].argmax(-1)
            emit = active & (labels != blank)
            if not bool(emit.any()):
                break
            new_g, new_state = model.predict(labels.clamp(max=blank - 1)[:, None], state, start=False)
            keep = emit[:, None, None]
            g = torch.where(keep, new_g, g)
            state = tuple(torch.where(emit[None, :, None], n, o) for n, o in zip(new_state, state))
            for i in emit.nonzero().flatten().tolist():
                hypotheses[i].append(int(labels[i]))
            counts += emit.long()
            active = emit & (counts < max_symbols)
    return hypotheses
