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

Padding costs no dense compute: the encoder works on the real tokens of the
batch flattened to [T, hidden] (NVIDIA's "unpad"), and only attention pads
them back to [B, S] for `scaled_dot_product_attention` with the per-sequence
mask (a fused varlen attention kernel would remove that too, but the ones in
PyTorch have no attention dropout, which BERT's reference model uses).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from bert.config import RULES

TINY_MAX_PREDICTIONS = 20  # 15% of 128 tokens, BERT's phase-1 setting; the synthetic corpus uses it


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
        """Same code, CPU-sized: for smoke runs and tests (MODEL_SIZE=debug)."""
        return cls(vocab_size=128, hidden=64, layers=2, heads=4, ffn=128, max_positions=128)


def model_config(model_size: str, dropout: float) -> tuple[BertConfig, int]:
    """The architecture of MODEL_SIZE (full: BERT-large; debug: tiny) and its masked-LM predictions per sequence."""
    if model_size == "debug":
        return dataclasses.replace(BertConfig.tiny(), dropout=dropout), TINY_MAX_PREDICTIONS
    return BertConfig(dropout=dropout), RULES.max_predictions_per_seq


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

    def forward(self, x, layout: "TokenLayout"):
        hidden = x.shape[-1]
        qkv = layout.pad(torch.cat([self.query(x), self.key(x), self.value(x)], dim=-1))  # [B, S, 3H]
        q, k, v = (t.unflatten(-1, (self.heads, hidden // self.heads)).transpose(1, 2)
                   for t in qkv.split(hidden, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.mask,
                                             dropout_p=self.attention_dropout if self.training else 0.0)
        return layout.unpad(out.transpose(1, 2).flatten(2))


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

    def forward(self, x, layout):
        return self.output(self.self(x, layout), x)


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

    def forward(self, x, layout):
        x = self.attention(x, layout)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.layers))

    def forward(self, x, layout):
        for layer in self.layer:
            x = layer(x, layout)
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


@dataclass(frozen=True)
class TokenLayout:
    """Where a batch's real tokens sit: indices into the flattened [B*S] rows, and the attention mask."""

    tokens: torch.Tensor  # [T]
    batch: int
    seq: int
    mask: torch.Tensor  # [B, 1, S, S], True within a sequence

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """[T, D] -> [B, S, D], zeros at padding."""
        out = x.new_zeros(self.batch * self.seq, x.shape[-1])
        return out.index_copy(0, self.tokens, x).view(self.batch, self.seq, -1)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, D] -> [T, D]."""
        return x.reshape(self.batch * self.seq, -1).index_select(0, self.tokens)


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
        batch, seq = input_ids.shape
        index, positions, starts = packing_layout(seq_lens, seq)
        mask = (index[:, :, None] == index[:, None, :])[:, None]  # [B, 1, S, S], within-sequence only
        real = (index < seq_lens.shape[1]).flatten()
        # the real tokens first, topped up with padding to a multiple of 16 rows (FP8 GEMMs need it)
        keep = min(real.numel(), -(-int(real.sum()) // 16) * 16)  # a host sync
        tokens = torch.argsort(~real, stable=True)[:keep]
        layout = TokenLayout(tokens, batch, seq, mask)
        x = self.bert.embeddings(*(t.flatten()[tokens] for t in (input_ids, token_type_ids, positions)))
        x = layout.pad(self.bert.encoder(x, layout))  # [B, S, H], zeros at padding
        gather = lambda at: torch.gather(x, 1, at[:, :, None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        mlm_logits = self.cls.predictions(gather(masked_positions))
        # absent sequences (length 0) may start past the row; their logits are ignored
        nsp_logits = self.cls.seq_relationship(self.bert.pooler(gather(starts.clamp(max=x.shape[1] - 1))))
        return mlm_logits, nsp_logits


def pretraining_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Masked-LM cross entropy (mean over real predictions) + next-sentence cross entropy of a collated batch.

    Padding predictions and absent sequences have label -1 (bert.data.collate) and count for nothing.
    """
    mlm_logits, nsp_logits = model(batch["input_ids"], batch["token_type_ids"], batch["seq_lens"],
                                   batch["masked_positions"])
    mlm = F.cross_entropy(mlm_logits.flatten(0, 1).float(), batch["masked_ids"].flatten(), ignore_index=-1)
    nsp = F.cross_entropy(nsp_logits.flatten(0, 1).float(), batch["nsp_labels"].flatten(), ignore_index=-1)
    return mlm + nsp
