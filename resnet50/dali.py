"""NVIDIA DALI input pipeline (USE_DALI=1): JPEG decoding and augmentation off the Python workers.

Reads the same ImageNet folder layout as `data.py`; DALI's file reader labels
classes in sorted folder order, as `ImageFolderDataset` does. On a GPU the
decoder runs in "mixed" mode (nvJPEG) and augmentation on the GPU; on a CPU
the same pipeline runs on DALI's CPU operators. Imported only when asked for.
"""
from __future__ import annotations

from pathlib import Path

import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

from resnet50.data import MEAN, STD

_MEAN = [255 * m for m in MEAN]
_STD = [255 * s for s in STD]


@pipeline_def
def _imagenet_pipeline(file_root: str, shard_id: int, num_shards: int, training: bool, size: int,
                       on_gpu: bool):
    # the Pipeline's own `seed` argument seeds the reader's shuffle and every random operator
    jpegs, labels = fn.readers.file(file_root=file_root, shard_id=shard_id, num_shards=num_shards,
                                    random_shuffle=training, case_sensitive_filter=False,
                                    pad_last_batch=False, name="reader")
    decoder = "mixed" if on_gpu else "cpu"
    if training:
        images = fn.decoders.image_random_crop(jpegs, device=decoder, output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[0.75, 4 / 3])
        images = fn.resize(images, resize_x=size, resize_y=size)
        mirror = fn.random.coin_flip(probability=0.5)
    else:
        images = fn.decoders.image(jpegs, device=decoder, output_type=types.RGB)
        images = fn.resize(images, resize_shorter=round(size / 0.875))
        mirror = False
    images = fn.crop_mirror_normalize(images, crop=(size, size), mean=_MEAN, std=_STD, mirror=mirror,
                                      dtype=types.FLOAT, output_layout="CHW")
    return images, labels


class DaliLoader:
    """Yields (images, labels) like a DataLoader; `len` is batches per epoch on this rank."""

    def __init__(self, pipe, training: bool, shard_size: int, batch_size: int):
        self._iterator = DALIGenericIterator(
            pipe, ["images", "labels"], reader_name="reader", auto_reset=True,
            last_batch_policy=LastBatchPolicy.DROP if training else LastBatchPolicy.PARTIAL)
        self._batches = shard_size // batch_size if training else -(-shard_size // batch_size)

    def __len__(self) -> int:
        return self._batches

    def __iter__(self):
        for batch in self._iterator:
            yield batch[0]["images"], batch[0]["labels"].squeeze(-1).long()


def build_dali_loaders(root: Path, cfg, denv, seed: int):
    """Train and eval loaders plus dataset sizes, as `data.build_loaders` returns them."""
    on_gpu = torch.cuda.is_available() and cfg.device != "cpu"
    loaders, sizes = [], []
    for split, training, batch in (("train", True, cfg.batch_size), ("val", False, cfg.eval_batch)):
        pipe = _imagenet_pipeline(file_root=str(Path(root) / split), shard_id=denv.rank,
                                  num_shards=denv.world_size, training=training, size=cfg.image_size,
                                  seed=seed, on_gpu=on_gpu, batch_size=batch,
                                  num_threads=max(1, cfg.num_workers),
                                  device_id=denv.local_rank if on_gpu else None)
        pipe.build()
        total = pipe.epoch_size("reader")
        # DALI shards [total * r / W, total * (r+1) / W): the shards cover every image once
        shard = total * (denv.rank + 1) // denv.world_size - total * denv.rank // denv.world_size
        loaders.append(DaliLoader(pipe, training, shard, batch))
        sizes.append(total)
    return loaders[0], loaders[1], sizes[0], sizes[1]
