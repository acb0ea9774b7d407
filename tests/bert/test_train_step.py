"""One optimizer step as bert.train builds it: gradient accumulation and sample counting."""
import dataclasses

import numpy as np
import torch

from bert import data
from bert.config import BertRunConfig
from bert.model import BertConfig, BertForPreTraining
from bert.synthetic import SyntheticLanguage
from bert.train import build_step
from common.precision import Precision


def batches(n, rows=4, seed=0):
    lang = SyntheticLanguage(128, 2, 0.9, seed)
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


def trainer(accum):
    torch.manual_seed(0)
    model = BertForPreTraining(dataclasses.replace(BertConfig.tiny(), dropout=0.0))
    cfg = BertRunConfig(batch_size=4, lr=1e-3, max_samples=10**6, max_steps=100, beta1=0.9, beta2=0.999,
                        weight_decay=0.01, grad_accum=accum, dropout=0.0)
    return model, build_step(model, cfg, Precision("fp32", "cpu"), torch.device("cpu"))


def capture_grads(model, step):
    grads, update = {}, step.optimizer.step

    def recording_step():
        grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        update()

    step.optimizer.step = recording_step
    return grads


def test_accumulating_two_identical_micro_batches_takes_the_step_of_one():
    batch = batches(1)[0]
    (model_one, one), (model_two, two) = trainer(1), trainer(2)
    grads_one, grads_two = capture_grads(model_one, one), capture_grads(model_two, two)
    one(iter([batch]))
    two(iter([batch, batch]))
    assert grads_one.keys() == grads_two.keys() and grads_one
    for name in grads_one:  # the loss is divided by the accumulation steps: same gradient, not twice it
        torch.testing.assert_close(grads_one[name], grads_two[name], msg=name)
    for (name, a), b in zip(model_one.named_parameters(), model_two.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    # sequences trained: both micro-batches counted
    assert one.monitor.drain().samples == 4 and two.monitor.drain().samples == 8


def test_accumulation_consumes_every_micro_batch_and_steps_once():
    stream = iter(batches(4, seed=1))
    model, step = trainer(2)
    step(stream)
    step(stream)
    assert step.steps == 2 and next(stream, None) is None  # 4 micro-batches for 2 optimizer steps
    state = step.optimizer.state[model.bert.pooler.dense.weight]
    assert state["step"] == 2
