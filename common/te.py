"""NVIDIA Transformer Engine, for the benchmarks' optional FP8 paths (PRECISION=fp8): imported only when asked for."""
from __future__ import annotations

import functools


def transformer_engine():
    """(transformer_engine.pytorch, transformer_engine.common.recipe), or a clear error where TE is missing."""
    try:
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe
    except ImportError as e:
        raise RuntimeError("PRECISION=fp8 needs NVIDIA Transformer Engine (in the NGC PyTorch image)") from e
    return te, recipe


@functools.lru_cache(maxsize=None)
def fp8_recipe(amax_history_len: int):
    """Delayed scaling, HYBRID format (E4M3 forward, E5M2 gradients), amax "max": built once per run."""
    _, recipe = transformer_engine()
    return recipe.DelayedScaling(fp8_format=recipe.Format.HYBRID, amax_history_len=amax_history_len,
                                 amax_compute_algo="max")


def fp8_autocast(amax_history_len: int):
    te, _ = transformer_engine()
    return te.fp8_autocast(enabled=True, fp8_recipe=fp8_recipe(amax_history_len))
