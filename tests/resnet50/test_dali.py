"""The DALI input pipeline (USE_DALI=1) reads the same layout and labels as the PyTorch one (CPU operators here)."""
from collections import Counter

import pytest
import torch

from common.dist import DistEnv
from resnet50.config import ResNetConfig
from resnet50.data import ImageFolderDataset

dali = pytest.importorskip("resnet50.dali", reason="nvidia-dali not installed (pip install '.[dali]')")

CFG = ResNetConfig(batch_size=16, lr=1.0, warmup_epochs=1, num_epochs=2, eval_offset=0, weight_decay=5e-5,
                   momentum=0.9, image_size=32, num_workers=1, device="cpu", use_dali=True, eval_batch_size=7)


def env(rank, world):
    return DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                   master_addr="127.0.0.1", master_port=0, launcher="single")


def test_dali_loaders_match_the_folder_dataset(synthetic_imagenet):
    train, val, n_train, n_val = dali.build_dali_loaders(synthetic_imagenet, CFG, env(0, 1), seed=1)
    assert (n_train, n_val) == (len(ImageFolderDataset(synthetic_imagenet, "train")), 240)
    images, labels = next(iter(train))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.shape == (16,)
    assert len(train) == n_train // 16
    expected = Counter(label for _, label in ImageFolderDataset(synthetic_imagenet, "val").samples)
    seen = Counter()
    for _, labels in val:
        seen.update(labels.tolist())
    assert seen == expected  # every validation image once, with its folder's label


def test_dali_eval_shards_cover_every_image_once(synthetic_imagenet):
    total = 0
    for rank in range(2):
        _, val, _, n_val = dali.build_dali_loaders(synthetic_imagenet, CFG, env(rank, 2), seed=1)
        total += sum(labels.numel() for _, labels in val)
    assert total == n_val
