"""The Transformer Engine converter: which linears each benchmark selects (on `meta`), and the swap itself."""
import sys
import types

import pytest
import torch
import torch.nn as nn

from bert.model import BertConfig, BertForPreTraining
from bert.train import in_encoder
from common import te
from gpt3.model import GPT, GPTConfig
from gpt3.parallelize import block_linears


def test_bert_selects_every_encoder_linear_and_no_embedding_or_head():
    with torch.device("meta"):
        model = BertForPreTraining(BertConfig())
    names = te.select_linears(model, in_encoder)
    assert len(names) == 24 * 6  # per layer: query, key, value, attention output, intermediate, output
    assert "bert.encoder.layer.0.attention.self.query" in names and "bert.encoder.layer.23.output.dense" in names
    assert not any(n.startswith(("cls.", "bert.pooler", "bert.embeddings")) for n in names)


def test_gpt3_selects_the_four_linears_of_every_block():
    with torch.device("meta"):
        model = GPT(GPTConfig())
    names = te.select_linears(model, block_linears)
    assert len(names) == 96 * 4
    assert {n.split(".", 2)[2] for n in names} == {"attention.qkv", "attention.proj", "mlp.fc1", "mlp.fc2"}


def test_without_transformer_engine_fp8_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformer_engine", None)  # `import transformer_engine` fails
    with torch.device("meta"):
        model = GPT(GPTConfig.tiny())
    with pytest.raises(RuntimeError, match="PRECISION=fp8 needs NVIDIA Transformer Engine"):
        te.apply_transformer_engine(model, block_linears)


class FakeTELinear(nn.Linear):
    """transformer_engine.pytorch.Linear's constructor, on plain PyTorch."""

    def __init__(self, in_features, out_features, bias=True, params_dtype=None, device=None):
        super().__init__(in_features, out_features, bias=bias, dtype=params_dtype, device=device)


@pytest.fixture
def fake_te(monkeypatch):
    pytorch = types.SimpleNamespace(Linear=FakeTELinear)
    common = types.SimpleNamespace(recipe=types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "transformer_engine", types.SimpleNamespace(pytorch=pytorch, common=common))
    monkeypatch.setitem(sys.modules, "transformer_engine.pytorch", pytorch)
    monkeypatch.setitem(sys.modules, "transformer_engine.common", common)
    monkeypatch.setitem(sys.modules, "transformer_engine.common.recipe", common.recipe)


def test_the_swap_keeps_names_shapes_and_stays_on_meta(fake_te):
    with torch.device("meta"):
        model = GPT(GPTConfig.tiny())
    before = {n: p.shape for n, p in model.named_parameters()}
    replaced = te.apply_transformer_engine(model, block_linears)
    assert len(replaced) == 4 * 4 and isinstance(model.layers["0"].attention.qkv, FakeTELinear)
    assert {n: p.shape for n, p in model.named_parameters()} == before  # checkpoints map one to one
    assert all(p.is_meta for p in model.parameters())
    assert type(model.embeddings.word) is nn.Embedding


def test_a_materialised_model_needs_a_gpu_for_the_swap(fake_te):
    model = BertForPreTraining(BertConfig.tiny())
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        te.apply_transformer_engine(model, in_encoder)


def test_a_selection_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="no nn.Linear"):
        te.apply_transformer_engine(nn.Sequential(nn.ReLU()), lambda name, module: True)
