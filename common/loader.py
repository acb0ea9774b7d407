"""Batch streams for `common.step.TrainStep`: a loader's epochs back to back, each batch moved to the device."""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator


def epochs(loader: Iterable, first: int = 1) -> Iterator:
    """Every batch of `loader`, epoch after epoch, without end; a `DistributedSampler` (or batch sampler) is told
    each epoch (`set_epoch`), so ranks shuffle alike and differently every epoch (DALI reshuffles by itself)."""
    for epoch in itertools.count(first):
        for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):  # a batch sampler too (rnnt's EpochBatches)
                sampler.set_epoch(epoch)
        yield from loader


def on_device(batches: Iterable, transfer: Callable) -> Iterator:
    """`transfer(batch)` of each batch: the host-to-device copy, part of the input pipeline."""
    return map(transfer, batches)
