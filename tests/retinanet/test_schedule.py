"""RetinaNet's learning rate: linear warmup from LR x 1e-3 over WARMUP_EPOCHS (per step), then constant."""
import pytest

from retinanet.config import RetinaNetConfig
from retinanet.train import warmup_lr


def config(warmup_epochs):
    return RetinaNetConfig(batch_size=32, lr=1e-4, num_epochs=8, warmup_epochs=warmup_epochs)


def test_warmup_rises_linearly_from_a_thousandth_of_the_lr_then_holds():
    lr = warmup_lr(config(1), steps_per_epoch=100)
    assert lr(0) == pytest.approx(1e-7)
    assert lr(50) == pytest.approx(1e-4 * (1e-3 * 0.5 + 0.5))
    assert [lr(i) for i in (100, 101, 10_000)] == [1e-4] * 3
    assert all(lr(i) < lr(i + 1) for i in range(99))


def test_a_fractional_warmup_counts_steps_and_no_warmup_starts_at_the_lr():
    quarter = warmup_lr(config(0.25), steps_per_epoch=96)
    assert quarter(23) < 1e-4 == quarter(24)
    assert warmup_lr(config(0), steps_per_epoch=96)(0) == 1e-4  # NVIDIA's 1-node config: WARMUP_EPOCHS=0
