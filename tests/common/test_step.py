"""The one training step: learning rate, micro-batches with gradient sync on the last only, loss checks."""
import importlib
import itertools
import pathlib

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from common import dist, step as step_module
from common.config import RuntimeConfig, SystemConfig, load_configs
from common.precision import Precision
from common.step import DataExhausted, LossMonitor, NonFiniteLoss, TrainStep, gradient_sync

CPU = torch.device("cpu")
FP32 = Precision("fp32", "cpu")


def linear_step(**kwargs):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    kwargs.setdefault("count", lambda b: len(b[0]))
    return model, TrainStep(model, optimizer, lambda b: ((model(b[0]) - b[1]) ** 2).mean(), precision=FP32,
                            device=CPU, **kwargs)


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)


def test_the_learning_rate_of_step_i_is_set_before_its_update():
    seen = []
    model, step = linear_step(lr=lambda i: 0.1 * (i + 1))
    original = step.optimizer.step
    step.optimizer.step = lambda: (seen.append(step.optimizer.param_groups[0]["lr"]), original())
    data = itertools.repeat(batch(0))
    for _ in range(3):
        step(data)
    assert seen == pytest.approx([0.1, 0.2, 0.3]) and step.steps == 3


def test_accumulating_micro_batches_takes_the_mean_gradient_of_the_whole_batch():
    (x1, y1), (x2, y2) = batch(1), batch(2)
    whole, step_whole = linear_step(lr=lambda i: 0.5)
    step_whole(iter([(torch.cat([x1, x2]), torch.cat([y1, y2]))]))
    split, step_split = linear_step(lr=lambda i: 0.5, accumulation=2)
    step_split(iter([(x1, y1), (x2, y2)]))
    for a, b in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(a, b)
    assert step_whole.monitor.drain().samples == step_split.monitor.drain().samples == 8


class RecordingFSDP(nn.Linear):
    """Stands in for an FSDP2 module: records what gradient_sync asks of it."""

    def __init__(self):
        super().__init__(1, 1)
        self.calls = []

    def set_requires_gradient_sync(self, enabled):
        self.calls.append(enabled)


def test_gradient_sync_is_off_for_all_but_the_last_micro_batch_for_fsdp2_and_ddp():
    fsdp = RecordingFSDP()
    with gradient_sync([fsdp], enabled=False):
        assert fsdp.calls == [False]
    assert fsdp.calls == [False, True]  # restored after the micro-batch
    with gradient_sync([fsdp], enabled=True):
        pass
    assert fsdp.calls == [False, True]
    torch_dist.init_process_group("gloo", store=torch_dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(nn.Linear(1, 1))
        with gradient_sync([ddp], enabled=False):
            assert not ddp.require_backward_grad_sync
        assert ddp.require_backward_grad_sync
    finally:
        torch_dist.destroy_process_group()


def test_ranks_agree_on_the_loss_only_every_check_every_steps(monkeypatch):
    reductions = []
    real = dist.all_reduce_sum
    monkeypatch.setattr(step_module.dist, "all_reduce_sum", lambda t: (reductions.append(1), real(t))[1])
    _, step = linear_step(check_every=5)
    data = itertools.repeat(batch(0))
    for _ in range(12):
        step(data)
    assert len(reductions) == 2  # after steps 5 and 10: one host sync each, not one per step
    stats = step.monitor.drain()
    assert len(reductions) == 3 and stats.samples == 12 * 4 and stats.mean_loss > 0


def test_a_non_finite_loss_ends_the_run_at_the_next_agreement():
    _, step = linear_step(check_every=3)
    nan = iter([batch(0), batch(0), (torch.full((4, 3), float("nan")), torch.zeros(4, 1))])
    step(nan)
    step(nan)
    with pytest.raises(NonFiniteLoss, match="1 step"):
        step(nan)


def test_running_out_of_data_before_the_schedule_is_named():
    _, step = linear_step(accumulation=2)
    with pytest.raises(DataExhausted, match="at step 0"):
        step(iter([batch(0)]))


def test_replicated_ranks_count_each_sample_once():
    monitor = LossMonitor(CPU, replicas=4)  # e.g. TP 2 x PP 2: four ranks see the same batch
    monitor.add(torch.tensor(1.0), 8)
    monitor.add(None, 8)  # a pipeline stage without the head
    stats = monitor.drain()
    assert stats.samples == 4 and stats.mean_loss == 1.0


def test_optimizer_kernels_fuse_on_a_gpu_and_loop_over_the_parameters_on_the_cpu():
    assert step_module.optimizer_kernels(torch.device("cuda", 3)) == {"fused": True}
    assert step_module.optimizer_kernels(CPU) == {"foreach": False}


@pytest.mark.parametrize("bench", ["retinanet", "maskrcnn", "unet3d"])
def test_each_benchmarks_cpu_step_loops_over_its_parameters_and_its_optimizer_takes_the_gpu_kernels(bench):
    """The CPU config's step builds its optimizer with the loop its seed sweeps were measured with; the same
    optimizer settings with `fused=True` (what a GPU gets) are accepted by torch (checked on CPU parameters,
    which torch's fused Adam and SGD also take)."""
    train = importlib.import_module(f"{bench}.train")
    bench_dir = pathlib.Path(train.__file__).parent
    cfg, *_ = load_configs(next(bench_dir.glob("config_CPU_*.sh")), train.RUN_CONFIG, SystemConfig, RuntimeConfig,
                           environ={})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    args = {"retinanet": (10,), "maskrcnn": (), "unet3d": (10,)}[bench]
    optimizer = train.build_step(model, cfg, FP32, CPU, *args).optimizer
    assert optimizer.defaults["foreach"] is False and not optimizer.defaults.get("fused")
    settings = {k: v for k, v in optimizer.defaults.items() if k not in ("foreach", "fused", "differentiable")}
    gpu_like = type(optimizer)(optimizer.param_groups, **settings, fused=True)
    assert gpu_like.defaults["fused"] is True
