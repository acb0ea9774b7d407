"""Optional Transformer Engine FP8 path (PRECISION=fp8): needs `transformer_engine` and a GPU.

`apply_transformer_engine` swaps every `nn.Linear` inside the encoder layers
for `transformer_engine.pytorch.Linear`, copying the weights, so parameter
names (and checkpoints) are unchanged; `fp8_autocast` runs those layers in FP8
with delayed scaling (E4M3 forward, E5M2 gradients: TE's HYBRID format, as
NVIDIA's v3.0 BERT used). Embeddings, heads and attention itself stay in bf16.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn


def _te():
    try:
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe
    except ImportError as e:
        raise RuntimeError("PRECISION=fp8 needs NVIDIA Transformer Engine (in the NGC PyTorch image)") from e
    return te, recipe


def apply_transformer_engine(model: nn.Module, device: torch.device) -> None:
    if device.type != "cuda":
        raise RuntimeError("PRECISION=fp8 needs a CUDA device")
    te, _ = _te()
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


@functools.lru_cache(maxsize=None)
def _recipe():
    """One delayed-scaling recipe for the whole run (not a new one per micro-step)."""
    _, recipe = _te()
    return recipe.DelayedScaling(fp8_format=recipe.Format.HYBRID, amax_history_len=16, amax_compute_algo="max")


def fp8_autocast():
    te, _ = _te()
    return te.fp8_autocast(enabled=True, fp8_recipe=_recipe())
