"""One optimizer step of the real Trainer: gradient accumulation and sample counting."""
import dataclasses

import numpy as np
import torch

from bert import data
from bert.config import BertRunConfig
from bert.model import BertConfig, BertForPreTraining
from bert.train import Trainer
from common import dist


def batches(n, rows=4, seed=0):
    lang = data.SyntheticLanguage(128, 2, 0.9, seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        seqs = [lang.sequence(rng, int(rng.integers(20, 60)), 20) for _ in range(rows)]
        rows_ = data.Rows([np.array(s["input_ids"]) for s in seqs], [np.array(s["segment_ids"]) for s in seqs],
                          [np.array(s["masked_lm_positions"]) for s in seqs],
                          [np.array(s["masked_lm_ids"]) for s in seqs], [np.array([len(s["input_ids"])]) for s in seqs],
                          [np.array([len(s["masked_lm_positions"])]) for s in seqs],
                          [np.array([s["next_sentence_label"]]) for s in seqs])
        out.append(data.collate(rows_, 128, 20))
    return out


def trainer(accum, stream):
    torch.manual_seed(0)
    model = BertForPreTraining(dataclasses.replace(BertConfig.tiny(), dropout=0.0))
    cfg = BertRunConfig(batch_size=4, lr=1e-3, max_samples=10**6, max_steps=100, beta1=0.9, beta2=0.999,
                        weight_decay=0.01, grad_accum=accum, model_size="tiny", dropout=0.0)
    return Trainer(cfg, model, dist.read_dist_env({}), torch.device("cpu"), iter(stream), [], 0, 20)


def capture_grads(t):
    grads, step = {}, t.optimizer.step

    def recording_step():
        grads.update({n: p.grad.clone() for n, p in t.model.named_parameters() if p.grad is not None})
        step()

    t.optimizer.step = recording_step
    return grads


def test_accumulating_two_identical_micro_batches_takes_the_step_of_one():
    batch = batches(1)[0]
    one, two = trainer(1, [batch]), trainer(2, [batch, batch])
    grads_one, grads_two = capture_grads(one), capture_grads(two)
    one.train_step()
    two.train_step()
    assert grads_one.keys() == grads_two.keys() and grads_one
    for name in grads_one:  # the loss is divided by the accumulation steps: same gradient, not twice it
        torch.testing.assert_close(grads_one[name], grads_two[name], msg=name)
    for (name, a), b in zip(one.model.named_parameters(), two.model.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert int(one._stats[0]) == 4 and int(two._stats[0]) == 8  # sequences trained, both micro-batches counted
    assert one.global_batch == 4 and two.global_batch == 8


def test_accumulation_consumes_every_micro_batch_and_steps_once():
    stream = batches(4, seed=1)
    t = trainer(2, stream)
    t.train_step()
    t.train_step()
    assert t.step == 2 and next(t.train_iter, None) is None  # 4 micro-batches for 2 optimizer steps
    state = t.optimizer.state[t.model.bert.pooler.dense.weight]
    assert state["step"] == 2
