"""Optional Transformer Engine FP8 path (PRECISION=fp8): needs `transformer_engine` and a GPU.

`apply_transformer_engine` swaps every `nn.Linear` inside the encoder layers
for `transformer_engine.pytorch.Linear`, copying the weights, so parameter
names (and checkpoints) are unchanged; `fp8_autocast` runs those layers in FP8
with delayed scaling (E4M3 forward, E5M2 gradients: TE's HYBRID format, as
NVIDIA's v3.0 BERT used). Embeddings, heads and attention itself stay in bf16.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from common import te as common_te

AMAX_HISTORY = 16  # steps of amax history in the delayed-scaling recipe


def apply_transformer_engine(model: nn.Module, device: torch.device) -> None:
    if device.type != "cuda":
        raise RuntimeError("PRECISION=fp8 needs a CUDA device")
    te, _ = common_te.transformer_engine()
    for layer in model.bert.encoder.layer:
        for parent in layer.modules():
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    fast = te.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                     params_dtype=child.weight.dtype, device=device)
                    with torch.no_grad():
                        fast.weight.copy_(child.weight)
                        if child.bias is not None:
                            fast.bias.copy_(child.bias)
                    setattr(parent, name, fast)


def fp8_autocast():
    return common_te.fp8_autocast(AMAX_HISTORY)
