"""Phase-1 checkpoints: the reference layout, loaded by name, with clear errors."""
import pytest
import torch

from bert.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bert.model import BertConfig, BertForPreTraining


def tiny(seed):
    torch.manual_seed(seed)
    return BertForPreTraining(BertConfig.tiny())


def test_save_load_round_trip_by_name(tmp_path):
    source, target = tiny(0), tiny(1)
    path = tmp_path / "model.ckpt-28252.pt"
    save_checkpoint(source, path)
    blob = torch.load(path, weights_only=True)
    assert list(blob) == ["model"]  # {'model': state_dict}, as the reference checkpoint
    assert "cls.predictions.decoder.weight" in blob["model"]
    assert "bert.encoder.layer.1.attention.self.query.weight" in blob["model"]
    assert not torch.equal(source.bert.embeddings.word_embeddings.weight, target.bert.embeddings.word_embeddings.weight)
    load_checkpoint(target, path)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), name
    # the decoder stays tied to the word embeddings after loading
    assert target.cls.predictions.decoder.weight is target.bert.embeddings.word_embeddings.weight


def test_loading_reorders_nothing_it_matches_names_not_positions(tmp_path):
    source = tiny(0)
    state = dict(reversed(list(source.state_dict().items())))
    torch.save({"model": state}, tmp_path / "reversed.pt")
    target = tiny(1)
    load_checkpoint(target, tmp_path / "reversed.pt")
    assert torch.equal(target.bert.pooler.dense.weight, source.bert.pooler.dense.weight)


def test_old_layernorm_names_and_an_unpadded_vocabulary_are_accepted(tmp_path):
    source = tiny(0)
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in source.state_dict().items()}
    vocab = source.cfg.vocab_size
    for key in ("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight", "cls.predictions.bias"):
        state[key] = state[key][: vocab - 6]  # like 30522 rows for a 30528-row model
    torch.save({"model": state}, tmp_path / "old.pt")
    target = tiny(1)
    load_checkpoint(target, tmp_path / "old.pt")
    emb = target.bert.embeddings.word_embeddings.weight
    assert torch.equal(emb[: vocab - 6], source.bert.embeddings.word_embeddings.weight[: vocab - 6])
    assert torch.count_nonzero(emb[vocab - 6:]) == 0
    assert torch.equal(target.bert.encoder.layer[0].output.LayerNorm.weight,
                       source.bert.encoder.layer[0].output.LayerNorm.weight)


def test_a_missing_tensor_is_named(tmp_path):
    state = tiny(0).state_dict()
    del state["bert.pooler.dense.bias"]
    torch.save({"model": state}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing.pt does not match the model: missing \['bert.pooler.dense.bias'\]"):
        load_checkpoint(tiny(1), tmp_path / "missing.pt")


def test_a_mis_shaped_tensor_is_named(tmp_path):
    state = tiny(0).state_dict()
    state["bert.encoder.layer.0.intermediate.dense.weight"] = torch.zeros(3, 3)
    torch.save({"model": state}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"'bert.encoder.layer.0.intermediate.dense.weight' has shape \(3, 3\)"):
        load_checkpoint(tiny(1), tmp_path / "shape.pt")


def test_a_truncated_or_foreign_file_is_refused_with_its_name(tmp_path):
    path = tmp_path / "model.ckpt-1.pt"
    save_checkpoint(tiny(0), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be read"):
        load_checkpoint(tiny(1), path)
    torch.save(tiny(0).state_dict(), tmp_path / "bare.pt")  # a bare state_dict, not {'model': ...}
    with pytest.raises(CheckpointError, match=r"must be \{'model': state_dict\}"):
        load_checkpoint(tiny(1), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tiny(1), tmp_path / "nope.pt")
