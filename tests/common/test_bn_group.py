"""BN_GROUP: BatchNorm statistics over groups of ranks, checked with 4 gloo processes on the CPU against one process.

The reference for a group is a plain nn.BatchNorm2d model (same init) run on the concatenation of the group's ranks'
batches, with loss = sum over the group's ranks of (out_r * G_r).sum() (G_r a fixed random upstream gradient).
- outputs and input gradients: each rank's equal the reference's slice for that rank (the all-reduce backward gives
  each rank the gradient of the whole group's loss);
- parameter gradients: each rank computes only its own slice's share, so the SUM over the group's ranks equals the
  reference's gradient (DDP's gradient all-reduce then sums them over the world);
- running statistics after 2 steps (momentum 0.1 and momentum None) and num_batches_tracked equal the reference's.
Controls that show the checks can fail: per-rank plain BatchNorm differs from the reference, and an all-reduce that
syncs the forward but not the backward gives reference outputs and wrong input gradients.
"""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from common.bn_group import GroupBatchNorm2d, bn_process_groups, check_group_size, convert_batchnorm

WORLD = 4
STEPS = 2
DEADLINE_S = 50
TOL = dict(rtol=1e-4, atol=1e-5)


def build_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.Conv2d(6, 5, 1), nn.BatchNorm2d(5, momentum=None))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank `rank`'s input [3, 4, 5, 5] (mean 0.5, std 2) and upstream gradient at `step`."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(3, 4, 5, 5, generator=g) * 2 + 0.5, torch.randn(3, 5, 5, 5, generator=g)


def train(model: nn.Module, ranks: list[int], steps: int = STEPS) -> dict:
    """Forward/backward on the concatenated batches of `ranks` (one rank: a worker's own batch)."""
    record = {"out": [], "xgrad": [], "pgrad": []}
    for step in range(steps):
        xs, gs = zip(*(batch(r, step) for r in ranks))
        x = torch.cat(xs).requires_grad_()
        out = model(x)
        (out * torch.cat(gs)).sum().backward()
        record["out"].append(out.detach())
        record["xgrad"].append(x.grad)
        record["pgrad"].append({n: p.grad.clone() for n, p in model.named_parameters()})
        model.zero_grad()
    record["buffers"] = {n: b.clone() for n, b in model.named_buffers()}
    return record


def forward_only_all_reduce(tensor, op=dist.ReduceOp.SUM, group=None):
    """The bug the gradient check must catch: the statistics are shared forward, the backward stays local."""
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=op, group=group)
    return tensor + (reduced - tensor.detach())


def no_collectives(*args, **kwargs):
    raise AssertionError("a collective was called in eval mode")


def worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=30))
    try:
        result = {}
        for group_size in (2, 4):
            model = convert_batchnorm(build_model(), group_size, "cpu")
            result["types"] = [type(m).__name__ for m in model]
            result[group_size] = train(model, [rank])
            if group_size == 2:
                trained = model
        with mock.patch("torch.distributed.nn.functional.all_reduce", forward_only_all_reduce):
            result["forward_only"] = train(convert_batchnorm(build_model(), 2, "cpu"), [rank], steps=1)

        plain = build_model()
        result["g1_unchanged"] = (convert_batchnorm(plain, 1, "cpu") is plain and bn_process_groups(1) is None
                                  and type(plain[1]) is nn.BatchNorm2d)
        for call in (lambda: bn_process_groups(3), lambda: convert_batchnorm(build_model(), 3, "cpu")):
            try:
                call()
                result.setdefault("g3_errors", []).append(None)
            except ValueError as error:
                result.setdefault("g3_errors", []).append(str(error))

        if rank == 0:  # eval on one rank only: a collective would raise here (or time out the others)
            trained.eval()
            x, _ = batch(0, 7)
            patches = [mock.patch(name, no_collectives) for name in
                       ("torch.distributed.nn.functional.all_reduce", "torch.distributed.all_reduce",
                        "torch.distributed.all_gather", "torch.distributed.broadcast")]
            for p in patches:
                p.start()
            try:
                with torch.no_grad():
                    got = trained(x)
            finally:
                for p in patches:
                    p.stop()
            reference = build_model()
            reference.load_state_dict(trained.state_dict())
            reference.eval()
            with torch.no_grad():
                result["eval"] = (got, reference(x))
        dist.barrier()
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("bn_group")
    ctx = mp.start_processes(worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"{WORLD} gloo workers did not finish in {DEADLINE_S} s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def groups(group_size: int) -> list[list[int]]:
    return [list(range(start, start + group_size)) for start in range(0, WORLD, group_size)]


def rows(rank_in_group: int) -> slice:
    return slice(3 * rank_in_group, 3 * rank_in_group + 3)


@pytest.mark.parametrize("group_size", [2, 4])
def test_matches_one_batchnorm_over_the_group(ranks, group_size):
    assert ranks[0]["types"] == ["Conv2d", "GroupBatchNorm2d", "ReLU", "Conv2d", "GroupBatchNorm2d"]
    for members in groups(group_size):
        ref = train(build_model(), members)
        for i, r in enumerate(members):
            got = ranks[r][group_size]
            for step in range(STEPS):
                torch.testing.assert_close(got["out"][step], ref["out"][step][rows(i)], **TOL)
                torch.testing.assert_close(got["xgrad"][step], ref["xgrad"][step][rows(i)], **TOL)
            torch.testing.assert_close(got["buffers"], ref["buffers"], **TOL)
        assert int(ref["buffers"]["1.num_batches_tracked"]) == STEPS
        for step in range(STEPS):
            summed = {n: sum(ranks[r][group_size]["pgrad"][step][n] for r in members) for n in ref["pgrad"][step]}
            # atol 1e-4: the bias of the conv before a BatchNorm has gradient 0, here float32 noise of ~2e-5.
            torch.testing.assert_close(summed, ref["pgrad"][step], rtol=1e-4, atol=1e-4)


def test_group_of_two_is_not_world_or_local_statistics(ranks):
    """Controls: the group-2 results differ from both per-rank and whole-world BatchNorm."""
    local = train(build_model(), [0])
    world = train(build_model(), list(range(WORLD)))
    got = ranks[0][2]
    assert (got["out"][0] - local["out"][0]).abs().max() > 1e-2
    assert (got["out"][0] - world["out"][0][rows(0)]).abs().max() > 1e-2
    assert (got["buffers"]["1.running_var"] - local["buffers"]["1.running_var"]).abs().max() > 1e-3


def test_gradient_check_catches_a_forward_only_all_reduce(ranks):
    ref = train(build_model(), [0, 1], steps=1)
    got = ranks[1]["forward_only"]
    torch.testing.assert_close(got["out"][0], ref["out"][0][rows(1)], **TOL)
    assert (got["xgrad"][0] - ref["xgrad"][0][rows(1)]).abs().max() > 1e-3


def test_group_size_one_and_bad_group_size_in_a_world_of_four(ranks):
    for result in ranks:
        assert result["g1_unchanged"]
        assert len(result["g3_errors"]) == 2
        for message in result["g3_errors"]:
            assert message is not None and "BN_GROUP=3" in message and "world size 4" in message


def test_eval_uses_running_statistics_without_collectives(ranks):
    got, expected = ranks[0]["eval"]
    torch.testing.assert_close(got, expected, **TOL)


# Single process, no process group.

def test_no_process_group_needed_for_group_size_one():
    model = build_model()
    assert bn_process_groups(1) is None
    assert convert_batchnorm(model, 1, "cpu") is model and convert_batchnorm(model, 1, "cuda") is model
    assert all(type(m) is not GroupBatchNorm2d for m in model)


@pytest.mark.parametrize("group_size, message", [(0, "BN_GROUP=0 must be a positive"), (2, "BN_GROUP=2 does not"),
                                                 (1.5, "BN_GROUP=1.5 must be")])
def test_bad_group_sizes_name_bn_group(group_size, message):
    with pytest.raises(ValueError, match=message):
        convert_batchnorm(build_model(), group_size, "cpu")
    with pytest.raises(ValueError, match=message):
        bn_process_groups(group_size)
    with pytest.raises(ValueError, match="BN_GROUP=3 does not divide the world size 8"):
        check_group_size(3, 8)


def test_conversion_keeps_parameters_buffers_and_settings():
    model = build_model()
    model[1].eval()
    originals = dict(model.state_dict(keep_vars=True))
    keys = list(model.state_dict())
    converted = GroupBatchNorm2d.convert(model, None)
    assert converted is model and type(model[4]) is GroupBatchNorm2d
    assert list(model.state_dict()) == keys
    assert all(v is originals[k] for k, v in model.state_dict(keep_vars=True).items())
    assert (model[1].momentum, model[4].momentum, model[1].eps, model[1].affine) == (0.1, None, 1e-5, True)
    assert not model[1].training and model[4].training
    bn = GroupBatchNorm2d.convert(nn.BatchNorm2d(3, eps=1e-3, affine=False, track_running_stats=False), None)
    assert type(bn) is GroupBatchNorm2d and (bn.eps, bn.affine, bn.track_running_stats) == (1e-3, False, False)
    assert bn.weight is None and bn.running_mean is None


def test_eval_needs_no_process_group():
    plain = build_model()
    with torch.no_grad():
        plain[1].running_mean.uniform_(-1, 1)
        plain[4].running_var.uniform_(0.5, 2)
    x, _ = batch(0, 0)
    expected = plain.eval()(x)
    converted = GroupBatchNorm2d.convert(build_model(), None)
    converted.load_state_dict(plain.state_dict())
    torch.testing.assert_close(converted.eval()(x), expected)


def test_unknown_device_type():
    with pytest.raises(ValueError, match="BN_GROUP"):
        convert_batchnorm(build_model(), 2, "meta")
