"""Phase-1 checkpoints in the MLPerf reference layout: `torch.save({'model': state_dict})`.

Keys are the `BertForPreTraining` names (`bert.embeddings.word_embeddings.weight`,
..., `cls.predictions.decoder.weight`, which is tied to the word embeddings).
Loading is by name and strict: a missing, unexpected, mis-shaped or
non-floating-point tensor is an error naming the checkpoint and the key
(floating-point tensors of another precision are cast). Two spellings older converters wrote
are accepted: LayerNorm `gamma`/`beta` for `weight`/`bias`, and a vocabulary of
30522 rows, which is padded with zero rows to the model's 30528.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn


class CheckpointError(ValueError):
    """A checkpoint file does not fit the model."""


VOCAB_KEYS = ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight", "cls.predictions.bias")


def save_checkpoint(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": state}, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name


def _normalise(name: str) -> str:
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a phase-1 checkpoint into `model` by name (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a torch.save file {{'model': state_dict}}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); {path.stat().st_size} "
                              f"bytes, expected a complete torch.save file (truncated or not a torch.save file)") from e
    if not isinstance(blob, dict) or not isinstance(blob.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} must be {{'model': state_dict}}")
    source = {_normalise(k): v for k, v in blob["model"].items()}
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path} does not match the model: missing {missing[:5]}"
                              f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                              f"{' ...' if len(unexpected) > 5 else ''}")
    for key, want in target.items():
        got = source[key]
        if not isinstance(got, torch.Tensor) or (want.is_floating_point() and not got.is_floating_point()):
            found = got.dtype if isinstance(got, torch.Tensor) else type(got).__name__
            raise CheckpointError(f"checkpoint {path}: '{key}' holds {found}, the model expects a floating-point "
                                  f"tensor ({want.dtype})")
        if key in VOCAB_KEYS and got.shape[0] < want.shape[0] and got.shape[1:] == want.shape[1:]:
            padded = torch.zeros(want.shape, dtype=got.dtype)
            padded[: got.shape[0]] = got
            source[key] = got = padded
        if got.shape != want.shape:
            raise CheckpointError(f"checkpoint {path}: '{key}' has shape {tuple(got.shape)}, "
                                  f"the model expects {tuple(want.shape)}")
    model.load_state_dict(source, strict=True)
