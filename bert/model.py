"""BERT-large with the masked-LM and next-sentence heads, for packed sequences.

Module names follow the `BertForPreTraining` tree (`bert.embeddings.*`,
`bert.encoder.layer.N.attention.self.query`, ..., `cls.predictions.*`,
`cls.seq_relationship.*`), so the MLPerf phase-1 checkpoint
(`model.ckpt-28252.pt`, `{'model': state_dict}`) loads by name.

A row holds up to 3 packed sequences back to back (`seq_lens`, zeros for
absent ones), then padding. Tokens attend only within their own sequence,
position ids restart at 0 for each sequence, and each sequence gets its own
next-sentence prediction from its first ([CLS]) token. An unpacked row is a
packed row with one sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30528  # 30522 padded to a multiple of 8
    hidden: int = 1024
    layers: int = 24
    heads: int = 16
    ffn: int = 4096
    max_positions: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # hidden and attention-probability dropout while training
    init_std: float = 0.02

    @classmethod
    def tiny(cls) -> "BertConfig":
        """Same code, CPU-sized: for smoke runs and tests."""
        return cls(vocab_size=128, hidden=64, layers=2, heads=4, ffn=128, max_positions=128)


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids, token_type_ids, position_ids):
        x = (self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.heads = cfg.heads
        self.attention_dropout = cfg.dropout
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x, mask):
        batch, seq, hidden = x.shape
        q, k, v = (proj(x).view(batch, seq, self.heads, hidden // self.heads).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(batch, seq, hidden)


class BertDenseLayerNorm(nn.Module):
    """dense -> dropout -> residual add -> LayerNorm (BERT's post-LN `*.output` blocks)."""

    def __init__(self, d_in: int, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertDenseLayerNorm(cfg.hidden, cfg)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.ffn)

    def forward(self, x):
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertDenseLayerNorm(cfg.ffn, cfg)

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.layers))

    def forward(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, cls_hidden):
        return torch.tanh(self.dense(cls_hidden))


class BertModel(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.decoder.weight = word_embeddings.weight  # tied, as in the reference checkpoint
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x):
        return self.decoder(self.transform(x)) + self.bias


class BertPreTrainingHeads(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, word_embeddings)
        self.seq_relationship = nn.Linear(cfg.hidden, 2)


def packing_layout(seq_lens: torch.Tensor, seq_len: int):
    """Per-token sequence index, position id and each sequence's start, from packed lengths.

    seq_lens: [B, P] lengths (0 = absent). Padding tokens get index P, so they
    form a group of their own and never attend to (or from) real tokens.
    """
    starts = torch.cumsum(seq_lens, dim=1) - seq_lens  # [B, P]
    ends = starts + seq_lens
    token = torch.arange(seq_len, device=seq_lens.device)
    inside = (token[None, None, :] >= starts[:, :, None]) & (token[None, None, :] < ends[:, :, None])  # [B,P,S]
    packs = seq_lens.shape[1]
    index = torch.where(inside.any(dim=1), inside.int().argmax(dim=1), torch.full_like(token, packs)[None])
    start_of_token = torch.gather(torch.cat([starts, torch.zeros_like(starts[:, :1])], dim=1), 1, index)
    positions = torch.where(index < packs, token[None] - start_of_token, torch.zeros_like(index))
    return index, positions, starts


class BertForPreTraining(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.bert = BertModel(cfg)
        self.cls = BertPreTrainingHeads(cfg, self.bert.embeddings.word_embeddings)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # BERT's initializer: N(0, 0.02) weights, zero biases, unit LayerNorm
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, input_ids, token_type_ids, seq_lens, masked_positions):
        """input_ids, token_type_ids: [B, S]; seq_lens: [B, P]; masked_positions: [B, M] token offsets.

        Returns masked-LM logits [B, M, V] at the masked positions only (the
        vocabulary projection is the largest matmul; padding rows of M are
        computed and ignored by the loss) and next-sentence logits [B, P, 2].
        """
        index, positions, starts = packing_layout(seq_lens, input_ids.shape[1])
        mask = (index[:, :, None] == index[:, None, :])[:, None]  # [B, 1, S, S], within-sequence only
        x = self.bert.embeddings(input_ids, token_type_ids, positions)
        x = self.bert.encoder(x, mask)
        gather = lambda at: torch.gather(x, 1, at[:, :, None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        mlm_logits = self.cls.predictions(gather(masked_positions))
        # absent sequences (length 0) may start past the row; their logits are ignored
        nsp_logits = self.cls.seq_relationship(self.bert.pooler(gather(starts.clamp(max=x.shape[1] - 1))))
        return mlm_logits, nsp_logits
