import torch

from gpt3.model import GPT, GPTConfig


def expected_parameters(cfg: GPTConfig) -> int:
    """GPT-3 parameter count from the architecture (output layer tied to the word embeddings)."""
    h, f = cfg.hidden, cfg.ffn
    linear = lambda d_in, d_out: d_in * d_out + d_out  # noqa: E731
    layer_norm = 2 * h
    layer = layer_norm + linear(h, 3 * h) + linear(h, h) + layer_norm + linear(h, f) + linear(f, h)
    return cfg.vocab_size * h + cfg.seq_len * h + cfg.layers * layer + layer_norm


def test_full_size_gpt3_on_meta_device_has_175b_parameters():
    cfg = GPTConfig()
    with torch.device("meta"):
        model = GPT(cfg)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(cfg) == 174_615_846_912
    # the "175B": 96 layers of 12 h^2 weights dominate
    assert 96 * 12 * 12288**2 == 173_946_175_488


def test_causal_outputs_do_not_depend_on_later_tokens():
    torch.manual_seed(0)
    cfg = GPTConfig.tiny()
    model = GPT(cfg).eval()
    tokens = torch.randint(0, cfg.vocab_size, (2, 32))
    changed = tokens.clone()
    changed[:, 20:] = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert a.shape == (2, 32, cfg.vocab_size)
    torch.testing.assert_close(a[:, :20], b[:, :20])
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_layernorm1p_starts_as_the_identity_normalisation_and_stores_gamma_minus_one():
    cfg = GPTConfig.tiny()
    model = GPT(cfg)
    norm = model.layers["0"].attn_norm
    assert torch.count_nonzero(norm.weight) == 0
    x = torch.randn(3, cfg.hidden)
    torch.testing.assert_close(norm(x), torch.nn.functional.layer_norm(x, (cfg.hidden,), eps=1e-5))


def test_qkv_output_features_are_grouped_per_head():
    """Splitting qkv's output features in two halves gives two independent sets of whole heads."""
    torch.manual_seed(0)
    cfg = GPTConfig.tiny()
    attn = GPT(cfg).layers["0"].attention
    x = torch.randn(2, 16, cfg.hidden)
    with torch.no_grad():
        full = attn.qkv(x).view(2, 16, cfg.heads, 3, cfg.hidden // cfg.heads)
        half = torch.nn.functional.linear(x, attn.qkv.weight[: 3 * cfg.hidden // 2], attn.qkv.bias[: 3 * cfg.hidden // 2])
        half = half.view(2, 16, cfg.heads // 2, 3, cfg.hidden // cfg.heads)
    torch.testing.assert_close(full[:, :, : cfg.heads // 2], half)


def test_output_layer_is_tied_to_the_embedding():
    cfg = GPTConfig.tiny()
    model = GPT(cfg)
    names = [n for n, _ in model.named_parameters()]
    assert "embeddings.word.weight" in names and not any(n.startswith("head.") and "weight" in n and "norm" not in n
                                                         for n in names)
    tokens = torch.randint(0, cfg.vocab_size, (1, 8))
    model(tokens).sum().backward()
    assert model.embeddings.word.weight.grad is not None
