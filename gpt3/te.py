"""Optional Transformer Engine FP8 path (PRECISION=fp8): needs `transformer_engine` and a GPU.

`apply_transformer_engine` swaps the four linears of every block (QKV, proj,
fc1, fc2) for `transformer_engine.pytorch.Linear` on the `meta` device before
the model is materialised, so parameter names — and the checkpoint mapping —
are unchanged and the checkpoint fills them as usual. `fp8_autocast` runs
them in FP8 with delayed scaling in NVIDIA's v3.0 GPT-3 settings
(`config_fp8.sh`: HYBRID format — E4M3 forward, E5M2 gradients — amax
history 1024, amax "max"). Embeddings, LayerNorms, attention and the head
stay in bf16. TE's own tensor parallelism is not wired to our DTensor
tensor parallelism, so FP8 needs TENSOR_MODEL_PARALLEL=1 (pipeline and FSDP2
data parallelism still apply).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common import te as common_te

AMAX_HISTORY = 1024  # FP8_AMAX_HISTORY in NVIDIA's config_fp8.sh
BLOCK_LINEARS = ("attention.qkv", "attention.proj", "mlp.fc1", "mlp.fc2")


def apply_transformer_engine(model: nn.Module, cfg, device: torch.device) -> None:
    """Replace the blocks' nn.Linear layers of a `meta` model by TE linears (also on `meta`)."""
    if device.type != "cuda":
        raise RuntimeError("PRECISION=fp8 needs a CUDA device")
    if cfg.tensor_parallel != 1:
        raise RuntimeError("PRECISION=fp8 runs with TENSOR_MODEL_PARALLEL=1 (TE tensor parallelism is not wired)")
    te, _ = common_te.transformer_engine()
    for block in model.layers.values():
        for path in BLOCK_LINEARS:
            parent_name, name = path.split(".")
            parent = block.get_submodule(parent_name)
            old = getattr(parent, name)
            setattr(parent, name, te.Linear(old.in_features, old.out_features, bias=True,
                                            params_dtype=torch.float32, device="meta"))


def fp8_autocast():
    return common_te.fp8_autocast(AMAX_HISTORY)
