"""RNN-T's training pieces: the reference's LR schedule, the EMA, and the hyperparameters closed_rnnt.yaml wants."""
import pytest
import torch
import torch.nn as nn
import yaml

from compliance.check import rules_file
from rnnt.config import RNNTConfig
from rnnt.evaluate import EMA
from rnnt.train import hyperparameters, learning_rate

NVIDIA_1536 = dict(batch_size=192, eval_batch_size=338, lr=0.0072, num_epochs=80, warmup_epochs=5, hold_epochs=26,
                   decay=0.92, ema=0.995)


def test_schedule_warms_up_per_step_holds_then_decays_per_epoch_as_the_reference():
    lr = learning_rate(RNNTConfig(**NVIDIA_1536), steps_per_epoch=181)  # 278,016 utterances / 1,536
    assert lr(0) == pytest.approx(0.0072 * 2 / 906)  # step 1: (s + 1) / (W S + 1)
    assert lr(903) == pytest.approx(0.0072 * 905 / 906)  # step 904, the last of the warmup
    assert lr(904) == lr(5609) == 0.0072  # held through epoch 31
    assert lr(5610) == pytest.approx(0.0072)  # step 5611, epoch 31: 0.92^0
    assert lr(5611) == pytest.approx(0.0072 * 0.92)  # epoch 32
    assert lr(47 * 181) == pytest.approx(0.0072 * 0.92 ** 17, rel=1e-9) == pytest.approx(0.0017447, abs=1e-7)
    slow = learning_rate(RNNTConfig(**{**NVIDIA_1536, "decay": 0.5}), steps_per_epoch=181)
    assert slow(79 * 181) == 1e-5  # floored at the rules' minimum


def test_ema_is_a_per_step_exponential_average_of_the_weights():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update()
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 2.0))
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())


def test_every_rule_key_but_the_data_and_lifecycle_ones_is_among_the_hyperparameters():
    rules = [r["KEY"]["NAME"] for r in yaml.safe_load(rules_file("closed_rnnt.yaml").read_text()) if "KEY" in r]
    logged = hyperparameters(RNNTConfig(**NVIDIA_1536), 1536)
    missing = set(rules) - set(logged) - {"train_samples", "eval_samples", "eval_accuracy"}
    assert not missing
    assert (logged["opt_lamb_epsilon"], logged["opt_weight_decay"], logged["opt_gradient_clip_norm"],
            logged["eval_max_prediction_symbols"], logged["opt_lamb_learning_rate_min"]) == (1e-9, 1e-3, 1.0, 300, 1e-5)
