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
conventions `gpt3.model` uses, so tensors map one to one. Loading here is into
a whole (unsharded) model; a missing array or a shape that does not fit is an
error naming the directory and the array.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.distributed.tensor import DTensor, distribute_tensor

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
    """Megatron name -> tensor (layers stacked) for the model's parameters mapped by `values`."""
    return {name: torch.stack([values(p) for p in group]) if stacked else values(group[0])
            for name, (group, stacked) in _targets(model).items()}


def _write(path: Path, tensor: torch.Tensor) -> None:
    import zarr  # imported here: only checkpoint I/O needs it

    array = tensor.detach().float().cpu().numpy()
    z = zarr.open_array(str(path), mode="w", shape=array.shape, dtype="float32", chunks=array.shape,
                        zarr_format=2)
    z[...] = array


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


def _read(directory: Path, name: str, shape) -> torch.Tensor:
    import zarr

    path = directory / name
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {directory}: array '{name}' is missing")
    try:
        array = zarr.open_array(str(path), mode="r")[...]
    except Exception as e:
        raise CheckpointError(f"checkpoint {directory}: array '{name}' cannot be read ({e})") from e
    if tuple(array.shape) != tuple(shape):
        raise CheckpointError(f"checkpoint {directory}: array '{name}' has shape {tuple(array.shape)}, "
                              f"the model expects {tuple(shape)}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _targets(model: GPT) -> dict[str, tuple[list[torch.nn.Parameter], bool]]:
    """Megatron name -> (our parameters, stacked over layers?)."""
    params = dict(model.named_parameters())
    layers = sorted(model.layers, key=int)
    out = {theirs: ([params[ours]], False) for ours, theirs in TOP_LEVEL.items()}
    for ours, theirs in LAYER_PARTS.items():
        for kind in ("weight", "bias"):
            out[f"language_model.encoder.layers.{theirs}.{kind}"] = (
                [params[f"layers.{i}.{ours}.{kind}"] for i in layers], True)
    return out


def load_checkpoint(model: GPT, optimizer: torch.optim.Optimizer | None, directory: Path,
                    weights: bool = True) -> dict:
    """Load weights (unless `weights=False`), and the Adam moments when `optimizer` is given; returns common.pt.

    Parameters that are tensor-parallel DTensors get their shard of each array
    (`distribute_tensor` with the parameter's placements), so a model can load
    whole and then be parallelized, with the moments loaded after it.
    """
    directory = Path(directory)
    meta = directory / "metadata.json"
    if not meta.is_file() or json.loads(meta.read_text()).get("sharded_backend") != "zarr":
        raise CheckpointError(f"checkpoint {directory}: metadata.json with sharded_backend 'zarr' is missing")
    common = torch.load(directory / "common.pt", weights_only=True)
    prefixes = ([("", None)] if weights else []) + ([(f"optimizer.state.{m}.", m) for m in ("exp_avg", "exp_avg_sq")]
                                                    if optimizer is not None else [])
    with torch.no_grad():
        for prefix, moment in prefixes:
            for name, (group, stacked) in _targets(model).items():
                shape = (len(group), *group[0].shape) if stacked else group[0].shape
                value = _read(directory, prefix + name, shape)
                for i, p in enumerate(group):
                    v = (value[i] if stacked else value).to(p.device, p.dtype)
                    if isinstance(p, DTensor):
                        v = distribute_tensor(v, p.device_mesh, p.placements)
                    if moment is None:
                        p.copy_(v)
                    else:
                        state = optimizer.state[p]
                        state[moment] = v.clone()
                        state["step"] = torch.tensor(float(common["step"]))
    return common
