"""LAMB against its published update rule, the schedule against NVIDIA's, and the eval cadence rule."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from bert.config import RULES, BertRunConfig
from bert.model import BertConfig, BertForPreTraining
from bert.optim import build_lamb, lamb_param_groups, warmup_poly_lr
from common.lamb import LAMB
from common.config import RuntimeConfig, SystemConfig, load_configs

BERT_DIR = Path(__file__).resolve().parents[2] / "bert"


def lamb_step_by_hand(w, g, *, lr, b1, b2, eps, wd, clip):
    """One LAMB step (t=1) for one tensor, in plain floats (You et al. 2019 with apex's choices)."""
    g = [x / clip for x in g]
    m = [(1 - b1) * x for x in g]
    v = [(1 - b2) * x * x for x in g]
    u = [(mi / (1 - b1)) / (math.sqrt(vi / (1 - b2)) + eps) + wd * wi for mi, vi, wi in zip(m, v, w)]
    w_norm, u_norm = math.sqrt(sum(x * x for x in w)), math.sqrt(sum(x * x for x in u))
    ratio = w_norm / u_norm if wd != 0 else 1.0
    return [wi - lr * ratio * ui for wi, ui in zip(w, u)]


def test_lamb_matches_the_published_rule_on_a_hand_checked_step():
    weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    bias = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    weight.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    bias.grad = torch.tensor([0.5], dtype=torch.float64)
    clip = math.sqrt(3.0**2 + 4.0**2 + 0.5**2)  # global norm over both groups, > max_grad_norm 1.0
    opt = LAMB([{"params": [weight], "weight_decay": 0.1}, {"params": [bias], "weight_decay": 0.0}],
               lr=0.01, betas=(0.9, 0.999))
    opt.step()
    want_w = lamb_step_by_hand([3.0, 4.0], [3.0, 4.0], lr=0.01, b1=0.9, b2=0.999, eps=1e-6, wd=0.1, clip=clip)
    want_b = lamb_step_by_hand([1.0], [0.5], lr=0.01, b1=0.9, b2=0.999, eps=1e-6, wd=0.0, clip=clip)
    assert weight.tolist() == pytest.approx(want_w, rel=1e-6)
    assert bias.tolist() == pytest.approx(want_b, rel=1e-6)
    # the trust ratio moved the decayed weight by lr * ||w|| / ||u|| * u, not lr * u
    assert 3.0 - weight[0].item() == pytest.approx(0.01 * 5 / math.sqrt(1.3**2 + 1.4**2) * 1.3, rel=1e-4)
    # the no-decay group took a plain Adam step of size lr (m_hat / sqrt(v_hat) = 1 at t=1)
    assert 1.0 - bias.item() == pytest.approx(0.01, rel=1e-4)


def test_small_gradients_are_not_scaled_up_by_the_clip():
    p = nn.Parameter(torch.tensor([1.0, 0.0], dtype=torch.float64))
    p.grad = torch.tensor([0.1, 0.2], dtype=torch.float64)  # norm < 1: no clipping
    LAMB([{"params": [p], "weight_decay": 0.0}], lr=0.1, betas=(0.5, 0.5)).step()
    want = lamb_step_by_hand([1.0, 0.0], [0.1, 0.2], lr=0.1, b1=0.5, b2=0.5, eps=1e-6, wd=0.0, clip=1.0)
    assert p.tolist() == pytest.approx(want, rel=1e-6)  # float32 arithmetic


def test_layernorm_and_bias_parameters_get_no_weight_decay():
    model = BertForPreTraining(BertConfig.tiny())
    decay, no_decay = lamb_param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert not any("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fused_lamb_is_refused_without_a_gpu():
    with pytest.raises(RuntimeError, match="FUSED_LAMB=1 needs a CUDA device"):
        build_lamb(nn.Linear(2, 2), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01, fused=True,
                   device=torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="apex FusedLAMB needs a GPU")
def test_our_lamb_matches_apex_fused_lamb_on_a_gpu():
    pytest.importorskip("apex.optimizers")
    torch.manual_seed(0)
    ours, theirs = (BertForPreTraining(BertConfig.tiny()).cuda() for _ in range(2))
    theirs.load_state_dict(ours.state_dict())
    opts = [build_lamb(m, lr=1e-2, betas=(0.6, 0.85), weight_decay=0.1, fused=fused, device=torch.device("cuda"))
            for m, fused in ((ours, False), (theirs, True))]
    for step in range(3):
        grads = {n: torch.randn_like(p) for n, p in ours.named_parameters()}
        for model, opt in zip((ours, theirs), opts):
            for n, p in model.named_parameters():
                p.grad = grads[n].clone()
            opt.step()
    for (n, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_schedule_without_warmup_starts_at_the_base_lr_and_decays_linearly():
    lr = lambda step: warmup_poly_lr(step, base_lr=0.00096, warmup_steps=0, start_warmup_step=0,  # noqa: E731
                                     total_steps=3680)
    assert lr(1) == pytest.approx(0.00096)  # NVIDIA's offset: step 1 counts as step 0
    assert lr(1841) == pytest.approx(0.00096 * 0.5)
    assert lr(3681) == 0.0 and lr(5000) == 0.0


def test_schedule_with_a_negative_warmup_start_begins_part_way_up_the_ramp():
    # NVIDIA's 8x8x72x1 config: START_WARMUP_STEP=-200000, WARMUP_STEPS=200330, MAX_STEPS=700
    lr = lambda step: warmup_poly_lr(step, base_lr=0.00258, warmup_steps=200330,  # noqa: E731
                                     start_warmup_step=-200000, total_steps=700)
    assert lr(1) == pytest.approx(0.00258 * 200001 / 200330)
    assert lr(329) == pytest.approx(0.00258 * 200329 / 200330)
    assert lr(330) == pytest.approx(0.00258 * (1 - 330 / 700))  # first decay step
    assert lr(700) == 0.0


@pytest.mark.parametrize("gbs,interval", [(768, 150_000), (4608, 200_000), (3072, 175_000), (12288, 275_000)])
def test_rules_eval_interval(gbs, interval):
    assert RULES.eval_interval_samples(gbs) == interval


@pytest.mark.parametrize("config", sorted(BERT_DIR.glob("config_[DH]GXH100_*x*.sh")), ids=lambda p: p.name)
def test_nvidia_configs_load_and_evaluate_at_least_as_often_as_the_rules(config):
    system, runtime, cfg = load_configs(config, SystemConfig, RuntimeConfig, BertRunConfig, environ={})
    world = system.nodes * system.gpus_per_node
    assert system.gpus_per_node == 8
    assert 0 < cfg.eval_every(world) <= RULES.eval_interval_samples(cfg.global_batch(world))
    assert runtime.precision == "bf16" and cfg.fused_lamb


def test_logged_global_batch_counts_sequences_as_nvidia_does():
    _, _, cfg = load_configs(BERT_DIR / "config_DGXH100_1x8x48x1_pack.sh", SystemConfig, RuntimeConfig,
                             BertRunConfig, environ={})
    assert cfg.global_batch(8) == 768  # NVIDIA's log: global_batch_size 768 = 48 rows x 2 x 8 GPUs
    assert (cfg.lr, cfg.max_steps, cfg.beta1, cfg.beta2) == (0.00096, 3680, 0.60466, 0.85437)


def test_evaluating_less_often_than_the_rules_is_refused():
    _, _, cfg = load_configs(BERT_DIR / "config_DGXH100_1x8x48x1_pack.sh", SystemConfig, RuntimeConfig,
                             BertRunConfig, environ={"EVAL_ITER_SAMPLES": "175000"})
    with pytest.raises(ValueError, match="EVAL_ITER_SAMPLES=175000 evaluates less often than the rules' 150000"):
        cfg.eval_every(8)
