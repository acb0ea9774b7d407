import torch

from bert.model import BertConfig, BertForPreTraining, packing_layout


def expected_parameters(cfg: BertConfig) -> int:
    """BERT pre-training parameter count from the architecture (decoder tied to the word embeddings)."""
    h, f, v = cfg.hidden, cfg.ffn, cfg.vocab_size
    linear = lambda d_in, d_out: d_in * d_out + d_out  # noqa: E731
    layer_norm = 2 * h
    embeddings = (v + cfg.max_positions + cfg.type_vocab) * h + layer_norm
    layer = 4 * linear(h, h) + layer_norm + linear(h, f) + linear(f, h) + layer_norm
    pooler = linear(h, h)
    heads = linear(h, h) + layer_norm + v + linear(h, 2)  # transform, LN, decoder bias, NSP
    return embeddings + cfg.layers * layer + pooler + heads


def test_full_size_bert_large_on_meta_device_has_the_architectures_parameter_count():
    cfg = BertConfig()
    with torch.device("meta"):
        model = BertForPreTraining(cfg)
    count = sum(p.numel() for p in model.parameters())  # parameters() yields the tied weight once
    assert count == expected_parameters(cfg) == 336_232_258
    # cross-check with the published BERT-large encoder size: 335,141,888 parameters at vocab 30522
    encoder = expected_parameters(BertConfig(vocab_size=30522)) - (1024 * 1024 + 1024 + 2 * 1024 + 30522 + 2050)
    assert encoder == 335_141_888
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_state_dict_uses_the_bert_for_pretraining_names():
    keys = set(BertForPreTraining(BertConfig.tiny()).state_dict())
    for name in ["bert.embeddings.word_embeddings.weight", "bert.embeddings.LayerNorm.bias",
                 "bert.encoder.layer.1.attention.self.query.weight",
                 "bert.encoder.layer.0.attention.output.dense.bias",
                 "bert.encoder.layer.0.attention.output.LayerNorm.weight",
                 "bert.encoder.layer.0.intermediate.dense.weight", "bert.encoder.layer.0.output.dense.weight",
                 "bert.encoder.layer.0.output.LayerNorm.bias", "bert.pooler.dense.weight",
                 "cls.predictions.bias", "cls.predictions.transform.dense.weight",
                 "cls.predictions.transform.LayerNorm.weight", "cls.predictions.decoder.weight",
                 "cls.seq_relationship.weight"]:
        assert name in keys, name


def test_packing_layout_restarts_positions_and_separates_sequences():
    index, positions, starts = packing_layout(torch.tensor([[3, 2, 0]]), 7)
    assert index.tolist() == [[0, 0, 0, 1, 1, 3, 3]]
    assert positions.tolist() == [[0, 1, 2, 0, 1, 0, 0]]
    assert starts.tolist() == [[0, 3, 5]]


def test_a_packed_row_gives_each_sequence_the_outputs_it_gets_alone():
    torch.manual_seed(0)
    cfg = BertConfig.tiny()
    model = BertForPreTraining(cfg).eval()
    lengths = [11, 7, 5]
    seqs = [torch.randint(0, cfg.vocab_size, (n,)) for n in lengths]
    types = [torch.cat([torch.zeros(n // 2, dtype=torch.long), torch.ones(n - n // 2, dtype=torch.long)])
             for n in lengths]
    masked = [torch.tensor([1, n - 2]) for n in lengths]
    total, row_len = sum(lengths), 32
    ids = torch.zeros(1, row_len, dtype=torch.long)
    tt = torch.zeros(1, row_len, dtype=torch.long)
    ids[0, :total], tt[0, :total] = torch.cat(seqs), torch.cat(types)
    offsets = [0, 11, 18]
    packed_masked = torch.cat([m + o for m, o in zip(masked, offsets)])[None]
    with torch.no_grad():
        mlm, nsp = model(ids, tt, torch.tensor([lengths]), packed_masked)
        for i, n in enumerate(lengths):
            pad = row_len - n  # alone, with the same amount of padding after it
            alone_ids = torch.cat([seqs[i], torch.zeros(pad, dtype=torch.long)])[None]
            alone_tt = torch.cat([types[i], torch.zeros(pad, dtype=torch.long)])[None]
            mlm_i, nsp_i = model(alone_ids, alone_tt, torch.tensor([[n]]), masked[i][None])
            assert torch.allclose(mlm[0, 2 * i:2 * i + 2], mlm_i[0], atol=1e-5)
            assert torch.allclose(nsp[0, i], nsp_i[0, 0], atol=1e-5)


def test_padding_does_not_produce_nans():
    cfg = BertConfig.tiny()
    model = BertForPreTraining(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 16))
    mlm, nsp = model(ids, torch.zeros_like(ids), torch.tensor([[5, 0, 0], [16, 0, 0]]), torch.tensor([[1], [2]]))
    assert torch.isfinite(mlm).all() and torch.isfinite(nsp).all()


def test_dense_layers_see_only_real_tokens_rounded_up_to_16():
    cfg = BertConfig.tiny()
    model = BertForPreTraining(cfg).eval()
    rows = []
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    ids = torch.randint(4, cfg.vocab_size, (2, 64))
    seq_lens = torch.tensor([[20, 9, 0], [30, 0, 0]])  # 59 real tokens of 128
    with torch.no_grad():
        mlm, _ = model(ids, torch.zeros_like(ids), seq_lens, torch.tensor([[1, 25], [3, 4]]))
        other = ids.clone()
        other[0, 29:], other[1, 30:] = 7, 9  # padding content must not matter
        mlm_other, _ = model(other, torch.zeros_like(ids), seq_lens, torch.tensor([[1, 25], [3, 4]]))
    assert rows == [64, 64]  # 59 real tokens -> 64 rows, not 2 x 64 = 128
    torch.testing.assert_close(mlm, mlm_other)
