"""The reference checkpoint layout (Zarr arrays, Megatron names), the synthetic corpus, and one short training run."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from compliance.check import read_events
from gpt3.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gpt3.data import TRAIN_FILES, VALID_FILE, IndexedDataset
from gpt3.model import GPT, GPTConfig
from gpt3.synthetic import LanguageSpec, MarkovLanguage, synthesize
from tests.conftest import GPT3_CPU_CONFIG, REPO, config_env

def trained(seed):
    torch.manual_seed(seed)
    model = GPT(GPTConfig.tiny())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 512, (2, 16))).sum().backward()
    optimizer.step()
    return model, optimizer


def test_checkpoint_round_trip_in_the_reference_layout(tmp_path):
    model, optimizer = trained(0)
    path = tmp_path / "ckpt4000-consumed_samples=0"
    save_checkpoint(model, optimizer, path, step=4000)
    assert json.loads((path / "metadata.json").read_text()) == {"sharded_backend": "zarr"}
    for name in ["language_model.embedding.word_embeddings.weight",
                 "language_model.encoder.layers.self_attention.query_key_value.weight",
                 "language_model.encoder.final_layernorm.bias",
                 "optimizer.state.exp_avg_sq.language_model.encoder.layers.mlp.dense_4h_to_h.weight"]:
        assert (path / name / ".zarray").is_file(), name
    import zarr
    stacked = zarr.open_array(str(path / "language_model.encoder.layers.self_attention.query_key_value.weight"))
    assert stacked.shape == (4, 3 * 64, 64)  # the layers stacked on axis 0
    other, other_opt = trained(1)
    assert load_checkpoint(other, other_opt, path) == {"step": 4000, "consumed_samples": 0}
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    p, q = model.layers["2"].mlp.fc1.weight, other.layers["2"].mlp.fc1.weight
    assert torch.equal(optimizer.state[p]["exp_avg_sq"], other_opt.state[q]["exp_avg_sq"])


def test_checkpoint_errors_name_the_array(tmp_path):
    model, optimizer = trained(0)
    path = tmp_path / "ckpt"
    save_checkpoint(model, None, path, step=1)
    wider = GPT(GPTConfig(vocab_size=512, seq_len=128, hidden=64, layers=4, heads=4, ffn=384))
    with pytest.raises(CheckpointError, match="'language_model.encoder.layers.mlp.dense_h_to_4h.weight' has shape"):
        load_checkpoint(wider, None, path)
    with pytest.raises(CheckpointError, match="'optimizer.state.exp_avg.language_model.* is missing"):
        load_checkpoint(model, optimizer, path)  # saved without moments
    (path / "metadata.json").unlink()
    with pytest.raises(CheckpointError, match="metadata.json"):
        load_checkpoint(model, None, path)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt3-synthetic")
    spec = LanguageSpec(train_documents=20, valid_documents=40)
    info = synthesize(root, spec, pretrain_steps=2)
    return root, spec, info


def test_synthetic_corpus_floor_is_just_above_the_window_floor(small_corpus):
    root, spec, info = small_corpus
    assert 2.6 < info["entropy_floor"] < 2.69
    # cross-check with the chain's entropy rate: per word H(profile)(1-q) + h(q), plus ln W per document start
    lang, q = MarkovLanguage(spec), spec.end_probability
    rate = (1 - q) * -(lang.profile * np.log(lang.profile)).sum() - q * math.log(q) - (1 - q) * math.log(1 - q)
    expected = (rate + q * math.log(spec.words)) / (1 + q)
    assert abs(info["entropy_floor"] - expected) < 0.05  # sampling noise of the eval set
    for name in (*TRAIN_FILES, VALID_FILE):
        assert len(IndexedDataset(root / "preproc_data" / name)) > 0
    assert (root / info["checkpoint"] / "metadata.json").is_file()


def test_a_short_training_run_logs_the_rules_values_and_counts_progress_in_tokens(small_corpus, tmp_path):
    root, _, info = small_corpus
    log = tmp_path / "gpt3.log"
    proc = subprocess.run([sys.executable, "-m", "gpt3.train", "--data-dir", str(root), "--seed", "5",
                           "--log-file", str(log)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=config_env(GPT3_CPU_CONFIG, MAX_SAMPLES="40"))
    assert proc.returncode == 1, proc.stderr[-3000:]  # one block, far from the target: out of budget
    events = read_events(log)
    value = {e["key"]: e["value"] for e in events}
    assert value["max_sequence_length"] == 2048 and value["opt_base_learning_rate"] == 2e-5
    assert value["init_checkpoint_step"] == 1_536_000 and value["global_batch_size"] == 4
    assert value["init_checkpoint"].endswith(info["checkpoint"])
    assert events[-1]["key"] == "run_stop" and events[-1]["metadata"]["status"] == "aborted"
    accuracy = [e for e in events if e["key"] == "eval_accuracy"]
    assert accuracy[0]["metadata"]["epoch_num"] == 40 * 2048  # progress in tokens
    assert value["train_samples"] == 40 * 2048  # the tokens trained (10 steps x 4 sequences), logged at the end
    assert value["eval_samples"] == IndexedDataset(root / "preproc_data" / VALID_FILE).num_tokens  # tokens too


@pytest.mark.slow
def test_cpu_smoke_run_reaches_the_window_from_its_checkpoint_and_passes_the_checker(gpt3_synthetic, gpt3_smoke):
    """The whole synthetic flow (corpus, tokenizer, untimed pre-training) and one run through run_local.sh."""
    from compliance.check import run_checker, summarize

    root = gpt3_synthetic
    proc, log = gpt3_smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    passed, output = run_checker(log)
    assert passed, output
    run = summarize(log)
    assert (run.benchmark, run.status, run.synthetic) == ("gpt3", "success", True)
    values = [e["value"] for e in read_events(log) if e["key"] == "eval_accuracy"]
    floor = json.loads((root / "SYNTHETIC.json").read_text())["entropy_floor"]
    assert 2.6 < floor < values[-1] <= 2.69  # inside the window, above the language's floor


def _evals(root, tmp_path, nproc, **overrides):
    log = tmp_path / f"run_{nproc}.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "gpt3.train"] if nproc > 1 else [sys.executable, "-m", "gpt3.train"]
    proc = subprocess.run([*cmd, "--data-dir", str(root), "--seed", "9", "--log-file", str(log)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=config_env(GPT3_CPU_CONFIG, MAX_SAMPLES="80", **overrides))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]  # out of budget, far from the target
    return [e["value"] for e in read_events(log) if e["key"] == "eval_accuracy"]


@pytest.mark.parametrize("layout", [
    {"TENSOR_MODEL_PARALLEL": "2"},
    {"PIPELINE_MODEL_PARALLEL": "2", "MICRO_BATCH_SIZE": "2"},
    {"MINIBS": "2", "MICRO_BATCH_SIZE": "1"},  # FSDP2 over 2 data-parallel ranks: the same global batch of 4
], ids=["tp2", "pp2", "fsdp2"])
def test_the_training_loop_on_2_processes_gives_the_single_process_evals(small_corpus, tmp_path, layout):
    """Each layout loads its shards of the checkpoint (weights and Adam moments) and trains the same model."""
    root, _, _ = small_corpus
    single = _evals(root, tmp_path, 1)
    assert len(single) == 2
    assert _evals(root, tmp_path, 2, DGXNGPU="2", **layout) == pytest.approx(single, rel=1e-4)


def test_a_pipeline_stage_built_on_meta_reads_only_its_layers_from_the_checkpoint(tmp_path):
    from gpt3.parallelize import pipeline_stages

    model, optimizer = trained(0)
    save_checkpoint(model, optimizer, tmp_path / "ckpt", step=7)
    with torch.device("meta"):
        skeleton = GPT(GPTConfig.tiny())
    (index, stage), = pipeline_stages(skeleton, pp_rank=1, pp_size=2, virtual=1)
    assert index == 1 and sorted(stage.layers) == ["2", "3"] and stage.embeddings is None
    stage.to_empty(device="cpu")
    stage_opt = torch.optim.AdamW(stage.parameters(), lr=1e-3, foreach=False)
    load_checkpoint(stage, stage_opt, tmp_path / "ckpt")
    theirs = dict(model.named_parameters())
    for name, p in stage.named_parameters():
        source = theirs["embeddings.word.weight" if name == "head.word.weight" else name]
        assert torch.equal(p, source), name  # layers 2-3 by their global index, the tied copy from the embeddings
        assert torch.equal(stage_opt.state[p]["exp_avg"], optimizer.state[source]["exp_avg"]), name
        assert stage_opt.state[p]["step"].item() == 7
