"""GPT-3 checkpoints in the layout of the MLPerf reference checkpoint (`ckpt4000-consumed_samples=0/`).

A directory with `metadata.json` (`{"sharded_backend": "zarr"}`), `common.pt`
(the step and consumed samples) and one Zarr (format 2) array per tensor, named
as Megatron names them, the layers stacked on axis 0:

    language_model.embedding.word_embeddings.weight      [vocab, hidden]
    language_model.embedding.position_embeddings.weight  [seq, hidden]
    language_model.encoder.layers.<part>.{weight,bias}   [layers, ...]
    language_model.encoder.final_layernorm.{weight,bias}

with the Adam moments under `optimizer.state.exp_avg.<name>` and
`optimizer.state.exp_avg_sq.<name>`. QKV is stored per head ([head, (q,k,v),
head_dim] rows) and LayerNorm weights as gamma - 1 ("layernorm1p"): the same
conventions `gpt3.model` uses, so tensors map one to one.

Loading is shard by shard: the model (or a pipeline stage of it) is built on
the `meta` device, parallelized, materialised with `to_empty`, and each rank
then reads only its own region of each array — its layers, and for a DTensor
parameter (tensor-parallel and/or FSDP2-sharded) its local shard — so no rank
ever holds the whole 175B model. Saving writes a whole (unsharded) model, as
the synthetic flow needs. A missing or unreadable metadata.json or common.pt,
a missing array (or one missing chunks: Zarr would read them as zeros), a shape
that does not fit, a dtype that is not floating point, or a chunk that cannot
be decoded is a `CheckpointError` naming the directory and the file or array.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from gpt3.model import GPT

LAYER_PARTS = {  # ours (inside a block) -> Megatron's (inside language_model.encoder.layers)
    "attn_norm": "input_layernorm",
    "attention.qkv": "self_attention.query_key_value",
    "attention.proj": "self_attention.dense",
    "mlp_norm": "post_attention_layernorm",
    "mlp.fc1": "mlp.dense_h_to_4h",
    "mlp.fc2": "mlp.dense_4h_to_h",
}
TOP_LEVEL = {
    "embeddings.word.weight": "language_model.embedding.word_embeddings.weight",
    "embeddings.position.weight": "language_model.embedding.position_embeddings.weight",
    "head.final_norm.weight": "language_model.encoder.final_layernorm.weight",
    "head.final_norm.bias": "language_model.encoder.final_layernorm.bias",
}


class CheckpointError(ValueError):
    """A checkpoint directory does not fit the model."""


def megatron_tensors(model: GPT, values=lambda p: p) -> dict[str, torch.Tensor]:
    """Megatron name -> tensor (layers stacked) for a whole model's parameters mapped by `values`."""
    return {name: torch.stack([values(p) for p in group]) if layers is not None else values(group[0])
            for name, (group, layers) in _targets(model).items()}


def _write(path: Path, tensor: torch.Tensor) -> None:
    import zarr  # imported here: only checkpoint I/O needs it

    array = tensor.detach().float().cpu().numpy()
    chunks = (1, *array.shape[1:]) if path.name.startswith(STACKED_PREFIX) else array.shape  # a layer per chunk
    z = zarr.open_array(str(path), mode="w", shape=array.shape, dtype="float32", chunks=chunks, zarr_format=2)
    z[...] = array


STACKED_PREFIX = "language_model.encoder.layers."


def save_checkpoint(model: GPT, optimizer: torch.optim.Optimizer | None, directory: Path, step: int,
                    consumed_samples: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metadata.json").write_text(json.dumps({"sharded_backend": "zarr"}))
    torch.save({"step": step, "consumed_samples": consumed_samples}, directory / "common.pt")
    for name, tensor in megatron_tensors(model).items():
        _write(directory / name, tensor)
    if optimizer is not None:
        for moment in ("exp_avg", "exp_avg_sq"):
            states = megatron_tensors(model, lambda p: optimizer.state[p][moment])
            for name, tensor in states.items():
                _write(directory / f"optimizer.state.{moment}.{name}", tensor)


def _open(directory: Path, name: str, shape):
    """The Zarr array `name`, checked against the model's (global) shape; nothing is read yet."""
    import zarr

    path = directory / name
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {directory}: array '{name}' is missing")
    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as e:
        raise CheckpointError(f"checkpoint {directory}: array '{name}' cannot be opened ({e})") from e
    if tuple(array.shape) != tuple(shape):
        raise CheckpointError(f"checkpoint {directory}: array '{name}' has shape {tuple(array.shape)}, "
                              f"the model expects {tuple(shape)}")
    if array.dtype.kind != "f":
        raise CheckpointError(f"checkpoint {directory}: array '{name}' has dtype {array.dtype}, "
                              f"expected floating point (float32)")
    if array.nchunks_initialized != array.nchunks:
        raise CheckpointError(f"checkpoint {directory}: array '{name}' has {array.nchunks_initialized} of its "
                              f"{array.nchunks} chunks (truncated copy?)")
    return array


def _read(directory: Path, name: str, array, index: tuple) -> np.ndarray:
    """This rank's region of an opened array; a chunk that cannot be decoded is named."""
    try:
        return np.ascontiguousarray(array[index])
    except Exception as e:  # the codec's own error (Zstd, Blosc, ...): no common type
        raise CheckpointError(f"checkpoint {directory}: array '{name}' cannot be read ({type(e).__name__}: {e}); "
                              f"a chunk is truncated or corrupt, expected {array.dtype} chunks of "
                              f"{tuple(array.chunks)}") from e


def _region(p: torch.Tensor) -> tuple[slice, ...]:
    """The part of the global tensor that this rank holds of parameter (or moment) p."""
    if isinstance(p, DTensor):
        shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    else:
        shape, offset = p.shape, (0,) * p.dim()
    return tuple(slice(o, o + n) for o, n in zip(offset, shape))


def _targets(model: GPT) -> dict[str, tuple[list[torch.nn.Parameter], list[int] | None]]:
    """Megatron name -> (our parameters, their global layer indices, or None for unstacked tensors).

    Works for a whole model or a pipeline stage: a stage has the layers it holds
    (under their global names) and the top-level tensors it holds; the last
    stage's copy of the tied word embedding (`head.word.weight`) maps to the
    word embeddings.
    """
    params = dict(model.named_parameters())
    layers = sorted(model.layers, key=int)
    out = {}
    for ours, theirs in {**TOP_LEVEL, "head.word.weight": TOP_LEVEL["embeddings.word.weight"]}.items():
        if ours in params and theirs not in out:
            out[theirs] = ([params[ours]], None)
    for ours, theirs in LAYER_PARTS.items():
        for kind in ("weight", "bias"):
            if layers:
                out[f"{STACKED_PREFIX}{theirs}.{kind}"] = (
                    [params[f"layers.{i}.{ours}.{kind}"] for i in layers], [int(i) for i in layers])
    return out


def load_checkpoint(model: GPT, optimizer: torch.optim.Optimizer | None, directory: Path,
                    weights: bool = True) -> dict:
    """Load weights (unless `weights=False`), and the Adam moments when `optimizer` is given; returns common.pt.

    `model` is a whole model or a pipeline stage, plain or parallelized; each
    parameter gets its own region of each array. The moments go into the
    optimizer's own state, which is created first by a step with zero gradients
    at LR 0 (so its tensors have the layout, device and dtype the optimizer —
    foreach, fused, DTensor — expects), then overwritten, with the step count
    of `common.pt`.
    """
    directory = Path(directory)
    meta = directory / "metadata.json"
    try:
        backend = json.loads(meta.read_text()).get("sharded_backend") if meta.is_file() else None
    except (ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {directory}: metadata.json is not a JSON object ({e}); expected "
                              f'{{"sharded_backend": "zarr"}}') from e
    if backend != "zarr":
        raise CheckpointError(f"checkpoint {directory}: metadata.json with sharded_backend 'zarr' is missing")
    common = _common(directory / "common.pt")
    targets = _targets(model)
    prefixes = [("", None)] if weights else []
    if optimizer is not None:
        _create_state(optimizer, [p for group, _ in targets.values() for p in group])
        prefixes += [(f"optimizer.state.{m}.", m) for m in ("exp_avg", "exp_avg_sq")]
    with torch.no_grad():
        for prefix, moment in prefixes:
            for name, (group, layers) in targets.items():
                full = group[0].shape
                array = _open(directory, prefix + name, (model.cfg.layers, *full) if layers else full)
                for i, p in enumerate(group):
                    target = p if moment is None else optimizer.state[p][moment]
                    index = ((layers[i],) if layers else ()) + _region(p)
                    local = target.to_local() if isinstance(target, DTensor) else target
                    local.copy_(torch.from_numpy(_read(directory, prefix + name, array, index)))
        if optimizer is not None:
            for group, _ in targets.values():
                for p in group:
                    optimizer.state[p]["step"].fill_(float(common["step"]))
    return common


def _common(path: Path) -> dict:
    """common.pt: the step and consumed samples (torch.save of a dict)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent}: common.pt is missing or not a file; expected torch.save "
                              f"of {{'step', 'consumed_samples'}}")
    try:
        common = torch.load(path, weights_only=True)
    except Exception as e:  # pickle's and zipfile's errors, truncated or not a torch file: no common type
        raise CheckpointError(f"checkpoint {path.parent}: common.pt cannot be loaded ({type(e).__name__}: {e}); "
                              f"truncated or corrupt") from e
    if not isinstance(common, dict) or not isinstance(common.get("step"), int):
        raise CheckpointError(f"checkpoint {path.parent}: common.pt holds {type(common).__name__}, expected a dict "
                              f"with an integer 'step'")
    return common


@torch.no_grad()
def _create_state(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    """Have the optimizer create its state for `params`: one step with zero gradients at LR 0 (a no-op)."""
    if all(optimizer.state.get(p) for p in params):
        return
    lrs = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for p in params:
        p.grad = None
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
