import math

import pytest
import torch
import torch.nn as nn

from resnet50.model import build_resnet50
from resnet50.optim import LARS, lars_param_groups, poly_warmup_lr


def test_full_size_model_on_meta_device_has_resnet50_v15_parameter_count():
    with torch.device("meta"):
        model = build_resnet50(1000)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    assert all(p.is_meta for p in model.parameters())


def test_v15_puts_the_stride_on_the_3x3_convolution():
    block = build_resnet50().layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)


def test_bn_and_bias_are_excluded_from_lars_and_weight_decay():
    model = build_resnet50()
    lars, plain = lars_param_groups(model, 5e-5)
    n_lars = sum(p.numel() for p in lars["params"])
    n_plain = sum(p.numel() for p in plain["params"])
    bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert n_plain == bn + 1000  # BN gamma/beta + fc bias
    assert n_lars + n_plain == 25_557_032
    assert plain["weight_decay"] == 0.0 and not plain["lars"] and lars["lars"]


def test_lars_step_matches_the_published_update_rule():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # |w| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])  # |g| = 1
    lr, wd, eta, mom = 2.0, 0.01, 0.001, 0.9
    opt = LARS([dict(params=[w], weight_decay=wd, lars=True), dict(params=[b], weight_decay=0.0, lars=False)],
               lr=lr, momentum=mom, weight_decay=wd, eta=eta)
    opt.step()
    trust = eta * 5 / (1 + wd * 5)
    v = lr * trust * (torch.tensor([0.6, 0.8]) + wd * torch.tensor([3.0, 4.0]))
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - v)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - lr * 0.5]))
    # second step: momentum accumulates
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])
    w_before = w.detach().clone()
    opt.step()
    trust2 = eta * w_before.norm() / (1 + wd * w_before.norm())
    v2 = mom * v + lr * trust2 * (torch.tensor([0.6, 0.8]) + wd * w_before)
    assert torch.allclose(w.detach(), w_before - v2, atol=1e-6)


def test_poly_schedule_warms_up_linearly_and_decays_to_the_end_lr():
    kw = dict(base_lr=10.0, end_lr=1e-4, warmup_steps=4, total_steps=12, power=2)
    assert [poly_warmup_lr(s, **kw) for s in range(4)] == [2.5, 5.0, 7.5, 10.0]
    assert poly_warmup_lr(4, **kw) == pytest.approx(10.0)
    assert poly_warmup_lr(8, **kw) == pytest.approx((10.0 - 1e-4) * 0.25 + 1e-4)
    assert poly_warmup_lr(12, **kw) == pytest.approx(1e-4)
    assert math.isclose(poly_warmup_lr(100, **kw), 1e-4)
