"""DLRM with a DCNv2 interaction (MLPerf Training v3.0 `dlrm_dcnv2`): architecture only.

    dense [B,13] -> bottom MLP 512-256-128 (ReLU) -------------------+
    26 multi-hot features -> EmbeddingBagCollection (sum, dim 128) --+-> concat [B, 27*128]
      -> 3 low-rank cross layers (rank 512) -> top MLP 1024-1024-512-256 (ReLU) -> 1 logit

The embeddings live in one TorchRec `EmbeddingBagCollection`, so that
`DistributedModelParallel` can shard its tables (see `dlrm_dcnv2.parallelize`).
`ModelShape.small()` is the same model with small tables and widths for CPUs.
`embeddings="torch"` puts the same tables in plain `torch.nn.EmbeddingBag`s
instead (`TorchEmbeddingBags`): one process, no TorchRec or FBGEMM — the
fallback `dlrm_dcnv2.bench` measures where they are not installed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import torch
import torch.nn as nn

from dlrm_dcnv2.config import HOTNESS, RULES, TABLE_ROWS

if TYPE_CHECKING:
    from torchrec import KeyedJaggedTensor

SMALL_TABLE_ROWS_CAP = 1000  # small(): every table capped at this many rows


def feature_names(num_tables: int = len(TABLE_ROWS)) -> list[str]:
    return [f"cat_{i}" for i in range(num_tables)]


@dataclass(frozen=True)
class ModelShape:
    """Every width of the model; `full()` is the benchmark's."""

    table_rows: tuple[int, ...] = TABLE_ROWS
    hotness: tuple[int, ...] = HOTNESS
    embedding_dim: int = 128
    bottom_mlp: tuple[int, ...] = (512, 256, 128)  # last width == embedding_dim
    cross_layers: int = 3
    cross_rank: int = 512
    top_mlp: tuple[int, ...] = (1024, 1024, 512, 256, 1)
    num_dense: int = RULES.num_dense

    def __post_init__(self):
        if self.bottom_mlp[-1] != self.embedding_dim:
            raise ValueError(f"bottom MLP ends at {self.bottom_mlp[-1]}, embeddings have dim {self.embedding_dim}")
        if len(self.table_rows) != len(self.hotness) or self.top_mlp[-1] != 1:
            raise ValueError("one hotness per table and a top MLP ending in 1 logit are required")

    @classmethod
    def full(cls) -> "ModelShape":
        return cls()

    @classmethod
    def small(cls) -> "ModelShape":
        """The same 26 features and hotness; tables of at most 1,000 rows, dim 16, narrow MLPs."""
        return cls(table_rows=tuple(min(n, SMALL_TABLE_ROWS_CAP) for n in TABLE_ROWS), embedding_dim=16,
                   bottom_mlp=(64, 16), cross_rank=32, top_mlp=(128, 64, 1))

    @property
    def interaction_dim(self) -> int:
        """Width of [bottom MLP output, 26 pooled embeddings]: 27 x 128 = 3456 for the full model."""
        return (len(self.table_rows) + 1) * self.embedding_dim


def mlp(widths: tuple[int, ...], in_features: int, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        layers.append(nn.Linear(in_features, width))
        if i < len(widths) - 1 or last_activation:
            layers.append(nn.ReLU())
        in_features = width
    return nn.Sequential(*layers)


class LowRankCrossLayer(nn.Module):
    """One DCNv2 cross layer with a rank-r weight: x_{l+1} = x_0 * (U (V x_l) + b) + x_l."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)  # V: dim -> rank
        self.up = nn.Linear(rank, dim, bias=True)  # U and b: rank -> dim

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.up(self.down(x)) + x


class CrossNetwork(nn.Module):
    def __init__(self, dim: int, rank: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(LowRankCrossLayer(dim, rank) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


class TorchEmbeddingBags(nn.Module):
    """The tables as `torch.nn.EmbeddingBag`s (sum pooling, sparse gradients for `torch.optim.Adagrad`); takes
    each table's ids as a [batch, hotness] tensor (`dlrm_dcnv2.data.to_batch(..., kjt=False)`) and returns the
    pooled embeddings by feature name, as `EmbeddingBagCollection(...).to_dict()` does."""

    def __init__(self, names: Sequence[str], table_rows: Sequence[int], dim: int,
                 device: torch.device | str | None = None):
        super().__init__()
        self.names = list(names)
        self.tables = nn.ModuleList(nn.EmbeddingBag(rows, dim, mode="sum", sparse=True, device=device)
                                    for rows in table_rows)

    def forward(self, ids: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: table(x) for name, table, x in zip(self.names, self.tables, ids)}


class DLRMDCNv2(nn.Module):
    """Click-through logits from 13 dense features and 26 multi-hot categorical features."""

    def __init__(self, shape: ModelShape, device: torch.device | str | None = None,
                 embeddings: Literal["torchrec", "torch"] = "torchrec"):
        super().__init__()
        self.shape = shape
        self.feature_names = names = feature_names(len(shape.table_rows))
        if embeddings == "torch":
            self.embeddings = TorchEmbeddingBags(names, shape.table_rows, shape.embedding_dim, device)
        else:
            from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, PoolingType

            # Tables on `meta` are materialised by DistributedModelParallel on their owning rank only.
            self.embeddings = EmbeddingBagCollection(tables=[
                EmbeddingBagConfig(name=f"t_{name}", embedding_dim=shape.embedding_dim, num_embeddings=rows,
                                   feature_names=[name], pooling=PoolingType.SUM)
                for name, rows in zip(names, shape.table_rows)], device=device)
        self.bottom_mlp = mlp(shape.bottom_mlp, shape.num_dense, last_activation=True).to(device)
        self.cross = CrossNetwork(shape.interaction_dim, shape.cross_rank, shape.cross_layers).to(device)
        self.top_mlp = mlp(shape.top_mlp, shape.interaction_dim, last_activation=False).to(device)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor | Sequence[torch.Tensor]) -> torch.Tensor:
        # A sharded collection returns its features grouped by shard, not in table order: pick by name.
        pooled = self.embeddings(sparse)
        pooled = pooled if isinstance(pooled, dict) else pooled.to_dict()
        x0 = torch.cat([self.bottom_mlp(dense), *(pooled[name] for name in self.feature_names)], dim=1)
        return self.top_mlp(self.cross(x0)).squeeze(1)
