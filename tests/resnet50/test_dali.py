"""The DALI input pipeline (USE_DALI=1) reads the same layout and labels as the PyTorch one (CPU operators here)."""
from collections import Counter

import pytest
import torch

from common.dist import DistEnv
from resnet50.config import ResNetConfig
from resnet50.data import ImageFolderDataset

dali = pytest.importorskip("resnet50.dali", reason="nvidia-dali not installed (pip install '.[dali]')")

CPU = torch.device("cpu")
CFG = ResNetConfig(batch_size=16, lr=1.0, warmup_epochs=1, num_epochs=2, eval_offset=0, weight_decay=5e-5,
                   momentum=0.9, image_size=32, use_dali=True, eval_batch_size=7)


def env(rank, world):
    return DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                   master_addr="127.0.0.1", master_port=0, launcher="single")


def test_dali_loaders_match_the_folder_dataset(synthetic_imagenet):
    train, val, n_train, n_val = dali.build_dali_loaders(synthetic_imagenet, CFG, env(0, 1), CPU, seed=1, num_workers=1)
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


def test_dali_shards_cover_eval_once_and_give_every_rank_the_same_steps(synthetic_imagenet):
    total, steps, train_labels = 0, [], []
    for rank in range(3):  # 320 train images do not split evenly over 3 ranks
        train, val, _, n_val = dali.build_dali_loaders(synthetic_imagenet, CFG, env(rank, 3), CPU, seed=1,
                                                       num_workers=1)
        total += sum(labels.numel() for _, labels in val)
        batches = list(train)
        steps.append(len(batches))
        assert len(batches) == len(train)
        train_labels.append(torch.cat([labels for _, labels in batches]))
    assert total == n_val
    assert steps == [7, 7, 7]  # ceil(320 / (3 x 16)): the epoch rounded up, as data.py's sampler and NVIDIA count
    # shards come from a seeded shuffle of the whole list: every rank sees most classes
    assert all(len(set(labels.tolist())) >= 8 for labels in train_labels)
