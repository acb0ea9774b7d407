"""NVIDIA Transformer Engine for the FP8 paths (PRECISION=fp8): imported only when asked for.

`apply_transformer_engine(model, select)` swaps the `nn.Linear` modules that
`select(name, module)` picks for `transformer_engine.pytorch.Linear` of the
same shape, in place, keeping their names (so checkpoints map one to one):
on a materialised model the weights are copied, on the `meta` device the new
layers stay on `meta` for the checkpoint loader to fill. `fp8_autocast` then
runs them in FP8 with delayed scaling in TE's HYBRID format (E4M3 forward,
E5M2 gradients), amax "max", as NVIDIA's v3.0 BERT and GPT-3 ran; the amax
history length is each benchmark's. Everything else stays in bf16 autocast.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn as nn

Selector = Callable[[str, nn.Module], bool]


def transformer_engine():
    """(transformer_engine.pytorch, transformer_engine.common.recipe), or a clear error where TE is missing."""
    try:
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe
    except ImportError as e:
        raise RuntimeError("PRECISION=fp8 needs NVIDIA Transformer Engine (transformer_engine, in the NGC PyTorch "
                           f"image), which this Python cannot import ({e}); use PRECISION=bf16") from e
    return te, recipe


def select_linears(model: nn.Module, select: Selector) -> list[str]:
    """Names of the plain `nn.Linear` modules `select` picks: the ones `apply_transformer_engine` replaces."""
    return [name for name, module in model.named_modules() if type(module) is nn.Linear and select(name, module)]


def apply_transformer_engine(model: nn.Module, select: Selector) -> list[str]:
    """Replace the selected linears by TE linears in place (see the module docstring); returns their names."""
    names = select_linears(model, select)
    if not names:
        raise ValueError(f"no nn.Linear of {type(model).__name__} matches the Transformer Engine selection")
    te, _ = transformer_engine()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        on_meta = old.weight.is_meta
        if not on_meta and old.weight.device.type != "cuda":
            raise RuntimeError("PRECISION=fp8 needs a CUDA device (Transformer Engine has no CPU kernels)")
        new = te.Linear(old.in_features, old.out_features, bias=old.bias is not None,
                        params_dtype=old.weight.dtype, device="meta" if on_meta else old.weight.device)
        if not on_meta:
            with torch.no_grad():
                new.weight.copy_(old.weight)
                if old.bias is not None:
                    new.bias.copy_(old.bias)
        setattr(parent, child, new)
    return names


@functools.lru_cache(maxsize=None)
def fp8_recipe(amax_history_len: int):
    """Delayed scaling, HYBRID format, amax "max": built once per run."""
    _, recipe = transformer_engine()
    return recipe.DelayedScaling(fp8_format=recipe.Format.HYBRID, amax_history_len=amax_history_len,
                                 amax_compute_algo="max")


def fp8_autocast(amax_history_len: int):
    te, _ = transformer_engine()
    return te.fp8_autocast(enabled=True, fp8_recipe=fp8_recipe(amax_history_len))
