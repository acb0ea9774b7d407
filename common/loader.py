"""Batch streams: a loader's epochs back to back for `common.step.TrainStep`, each batch moved to the device;
an evaluation set read once and replayed."""
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


class Replay:
    """The batches of a deterministic `loader` (no shuffling, no random augmentation), read once and then
    replayed from memory: each pass yields the same batches, the first from the loader, the later ones from the
    list it filled. For an evaluation set small enough to keep (rnnt's dev-clean: 5.4 h of 16 kHz float32 audio,
    1.2 GB over all ranks), whose reading would otherwise compete with the evaluation itself every time. A pass
    cut short keeps nothing, and the next one reads the loader again."""

    def __init__(self, loader: Iterable):
        self.loader, self.batches = loader, None

    def __iter__(self) -> Iterator:
        if self.batches is not None:
            yield from self.batches
            return
        batches = []
        for batch in self.loader:
            batches.append(batch)
            yield batch
        self.batches = batches
