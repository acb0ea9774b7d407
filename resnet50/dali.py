"""NVIDIA DALI input pipeline (USE_DALI=1): JPEG decoding and augmentation off the Python workers.

Reads the same ImageNet folder layout, through the same file listing and
labels, as `data.py`. On a GPU the decoder runs in "mixed" mode (nvJPEG) and
augmentation on the GPU; on a CPU the same pipeline runs on DALI's CPU
operators. Imported only when asked for.

Sharding: DALI gives shard r the contiguous slice [N*r/W, N*(r+1)/W) of the
file list. Training therefore lists the files in a seeded random order (the
same on every rank, so the shards are class-balanced), padded with its own
first files to `steps_per_epoch` x global batch (NVIDIA's rounded-up epoch:
every rank runs the same number of full steps and no image is skipped), and
reshuffles the
whole list after each epoch (`shuffle_after_epoch`, again identical on every
rank). Evaluation lists every validation image once.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from resnet50.config import steps_per_epoch
from resnet50.data import MEAN, STD, ImageFolderDataset

_MEAN = [255 * m for m in MEAN]
_STD = [255 * s for s in STD]


@pipeline_def
def _imagenet_pipeline(files: list[str], labels: list[int], shard_id: int, num_shards: int,
                       training: bool, size: int, on_gpu: bool, augment_seed: int):
    # The Pipeline's own `seed` drives the reader's shuffle and must match
    # across ranks; `augment_seed` differs per rank so crops and flips do too.
    jpegs, label = fn.readers.file(files=files, labels=labels, shard_id=shard_id, num_shards=num_shards,
                                   shuffle_after_epoch=training, pad_last_batch=False, name="reader")
    decoder = "mixed" if on_gpu else "cpu"
    if training:
        images = fn.decoders.image_random_crop(jpegs, device=decoder, output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[0.75, 4 / 3],
                                               seed=augment_seed)
        images = fn.resize(images, resize_x=size, resize_y=size)
        mirror = fn.random.coin_flip(probability=0.5, seed=augment_seed + 1)
    else:
        images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
        images = fn.resize(images, resize_shorter=round(size / 0.875))
        mirror = False
    images = fn.crop_mirror_normalize(images, crop=(size, size), mean=_MEAN, std=_STD, mirror=mirror,
                                      dtype=types.FLOAT, output_layout="CHW")
    return images, label


class DaliLoader:
    """Yields (images, labels) like a DataLoader; `len` is batches per epoch on this rank."""

    def __init__(self, pipe, training: bool, shard_size: int, batch_size: int):
        # prepare_first_batch=False: no decoding before run_start (the timed region)
        self._iterator = DALIGenericIterator(
            pipe, ["images", "labels"], reader_name="reader", auto_reset=True, prepare_first_batch=False,
            last_batch_policy=LastBatchPolicy.DROP if training else LastBatchPolicy.PARTIAL)
        self._batches = shard_size // batch_size if training else -(-shard_size // batch_size)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self):
        for batch in self._iterator:
            yield batch[0]["images"], batch[0]["labels"].squeeze(-1).long()


def _file_list(root: Path, split: str) -> tuple[list[str], list[int]]:
    dataset = ImageFolderDataset(root, split)  # same listing, labels and errors as the PyTorch path
    return [str(path) for path, _ in dataset.samples], [label for _, label in dataset.samples]


def build_dali_loaders(root: Path, cfg, denv, device: torch.device, seed: int, num_workers: int):
    """Train and eval loaders plus dataset sizes, as `data.build_loaders` returns them."""
    on_gpu = device.type == "cuda"
    world, rank = denv.world_size, denv.rank
    loaders, sizes = [], []
    for split, training, batch in (("train", True, cfg.batch_size), ("val", False, cfg.eval_batch)):
        files, labels = _file_list(root, split)
        sizes.append(len(files))
        if training:
            order = list(range(len(files)))
            random.Random(seed).shuffle(order)
            padded = steps_per_epoch(len(order), world * batch) * world * batch
            order = (order * (1 + padded // len(order)))[:padded]  # equal shards of whole steps on every rank
            files, labels = [files[i] for i in order], [labels[i] for i in order]
        pipe = _imagenet_pipeline(files=files, labels=labels, shard_id=rank, num_shards=world,
                                  training=training, size=cfg.image_size, on_gpu=on_gpu,
                                  augment_seed=seed + 1000 * rank, seed=seed, batch_size=batch,
                                  num_threads=max(1, num_workers),
                                  device_id=device.index if on_gpu else None)
        pipe.build()
        shard = len(files) * (rank + 1) // world - len(files) * rank // world
        loaders.append(DaliLoader(pipe, training, shard, batch))
    return loaders[0], loaders[1], sizes[0], sizes[1]
