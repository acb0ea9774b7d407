"""GPT-3 175B as MLPerf trains it (NeMo/Megatron `megatron_gpt_config.yaml` of NVIDIA's v3.0 submission).

96 pre-LayerNorm decoder layers, hidden 12288, 96 heads, FFN 49152 with GELU,
learned absolute position embeddings (2048), biases everywhere, no dropout,
LayerNorm eps 1e-5 in Megatron's "layernorm1p" form (the stored weight is
gamma - 1, so a zero-initialised weight is the identity), the output layer tied
to the word embeddings (vocab 50257 padded to 51200), init N(0, 0.006).

The QKV projection is one linear layer whose output is laid out per head —
[head, (q, k, v), head_dim], as Megatron stores it — so splitting its output
features evenly across tensor-parallel ranks gives every rank whole heads.
Attention is causal `scaled_dot_product_attention`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 51200  # 50257 padded to a multiple of 128 x tensor-parallel size 8
    seq_len: int = 2048
    hidden: int = 12288
    layers: int = 96
    heads: int = 96
    ffn: int = 49152
    layer_norm_eps: float = 1e-5
    init_std: float = 0.006

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> "GPTConfig":
        """Same code, CPU-sized, short context: for tests."""
        return cls(vocab_size=vocab_size, seq_len=128, hidden=64, layers=4, heads=4, ffn=256)

    @classmethod
    def cpu(cls) -> "GPTConfig":
        """The CPU smoke run's model (MODEL_SIZE=debug): the benchmark's 2048-token context, tiny width, a vocabulary
        padded to 256 for the synthetic corpus's tokenizer, and an init std scaled up for the small
        width (0.006 is GPT-3's for hidden 12288; at hidden 64 it starves the logits)."""
        return cls(vocab_size=256, seq_len=2048, hidden=64, layers=2, heads=2, ffn=256, init_std=0.05)

    @classmethod
    def for_size(cls, model_size: str) -> "GPTConfig":
        """MODEL_SIZE: GPT-3 175B ("full"), or the CPU model ("debug") with the same 2048-token context."""
        return cls.cpu() if model_size == "debug" else cls()


class LayerNorm1P(nn.LayerNorm):
    """LayerNorm whose weight is stored as gamma - 1 (Megatron's `layernorm1p`)."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight + 1, self.bias, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.head_dim = cfg.hidden // cfg.heads
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)  # output features: [head, (q, k, v), head_dim]
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x):
        batch, seq, _ = x.shape
        # heads on this rank: all of them, or heads / TP when qkv is column-sharded
        qkv = self.qkv(x).view(batch, seq, -1, 3, self.head_dim)
        q, k, v = (qkv[:, :, :, i].transpose(1, 2) for i in range(3))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, -1))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.ffn)
        self.fc2 = nn.Linear(cfg.ffn, cfg.hidden)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn_norm = LayerNorm1P(cfg.hidden, eps=cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.mlp_norm = LayerNorm1P(cfg.hidden, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attention(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Embeddings(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position = nn.Embedding(cfg.seq_len, cfg.hidden)

    def forward(self, tokens):
        return self.word(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))


class Head(nn.Module):
    """Final LayerNorm and the output projection, tied to the word embeddings (no weight of its own)."""

    def __init__(self, cfg: GPTConfig, word: nn.Embedding):
        super().__init__()
        self.final_norm = LayerNorm1P(cfg.hidden, eps=cfg.layer_norm_eps)
        self._word = [word]  # a reference, not a submodule: the weight is registered once, in embeddings

    def forward(self, x):
        return F.linear(self.final_norm(x), self._word[0].weight)


class GPT(nn.Module):
    """Token ids [B, S] -> next-token logits [B, S, vocab]."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.layers)})
        self.head = Head(cfg, self.embeddings.word)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=self.cfg.init_std)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            if isinstance(module, LayerNorm1P):
                module.reset_parameters()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """A pipeline stage without `embeddings` takes hidden states; one without `head` returns them."""
        x = self.embeddings(tokens) if self.embeddings is not None else tokens
        for layer in self.layers.values():
            x = layer(x)
        return self.head(x) if self.head is not None else x


IGNORE = -100  # target of a padding row


class LMLoss:
    """Next-token cross entropy (nats) of logits [B, S, V] against targets [B, S]; IGNORE marks padding.

    Mean over the tokens for training; `reduction = "sum"` while evaluating
    (the pipeline schedule calls the same object on its last stage).
    """

    reduction = "mean"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE,
                               reduction=self.reduction)
