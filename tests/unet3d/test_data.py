"""The KiTS19 numpy layout: split, header checks naming the file, foreground oversampling and augmentation."""
import numpy as np
import pytest
import torch

from unet3d.config import VALIDATION_CASES
from unet3d.data import (Case, DataError, EpochSampler, TrainPatches, augment, balanced_shards, case_paths,
                         foreground_crop, largest_objects, random_crop, read_case, read_split, write_case)


def write_all(root, side=8):
    for case_id in range(210):
        shape = (1, side, side, side)
        write_case(root, case_id, np.zeros(shape, np.float32), np.zeros(shape, np.uint8))


def test_the_42_validation_ids_are_held_out_and_the_168_others_train(tmp_path):
    write_all(tmp_path)
    train, val = read_split(tmp_path)
    assert (len(train), len(val)) == (168, 42)
    assert [c.id for c in val] == list(VALIDATION_CASES)
    assert not {c.id for c in train} & set(VALIDATION_CASES) and train[0].name == "case_00001"
    assert not list(tmp_path.glob("*.tmp"))  # writes are renamed into place


def test_missing_and_unexpected_cases_and_an_empty_folder_are_named(tmp_path):
    with pytest.raises(DataError, match="no case_XXXXX_x.npy files; run `python3 -m unet3d.preprocess`"):
        read_split(tmp_path)
    write_all(tmp_path)
    for case_id in (3, 100):  # a validation case and a training case
        for path in case_paths(tmp_path, case_id):
            path.unlink()
    write_case(tmp_path, 250, np.zeros((1, 8, 8, 8), np.float32), np.zeros((1, 8, 8, 8), np.uint8))
    with pytest.raises(DataError, match="case\\(s\\) 00003, 00100 missing; case\\(s\\) 00250 beyond KiTS19's "
                                        "labelled 0-209; expected .* for cases 0-209"):
        read_split(tmp_path)


def test_wrong_dtype_truncated_file_mismatched_shapes_and_short_sides_are_named(tmp_path):
    write_all(tmp_path)
    image, label = case_paths(tmp_path, 7)
    np.save(image, np.zeros((1, 8, 8, 8), np.float64))
    with pytest.raises(DataError, match=f"{image}: float64 \\(1, 8, 8, 8\\); expected float32 \\(1, D, H, W\\)"):
        read_split(tmp_path)
    np.save(image, np.zeros((1, 8, 8, 8), np.float32))
    label.write_bytes(label.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{label}: not a complete .npy file .*truncated or corrupt"):
        read_split(tmp_path)
    np.save(label, np.zeros((1, 8, 8, 9), np.uint8))
    with pytest.raises(DataError, match=f"{label}: shape \\(1, 8, 8, 9\\) differs"):
        read_split(tmp_path)
    np.save(label, np.zeros((1, 8, 8, 8), np.uint8))
    with pytest.raises(DataError, match="every side must be >= 32, the training patch"):
        read_split(tmp_path, min_side=32)


def corner_blob_case(tmp_path, side=64):
    label = np.zeros((1, side, side, side), np.uint8)
    label[0, 2:6, 2:6, 2:6] = 1  # a kidney in a corner: a random 16^3 patch almost never holds it
    label[0, 3:5, 3:5, 3:5] = 2
    write_case(tmp_path, 1, label.astype(np.float32), label)
    return read_case(tmp_path, 1)


def test_oversampling_centres_the_configured_share_of_patches_on_foreground(tmp_path):
    patches = TrainPatches([corner_blob_case(tmp_path)], patch=16, oversampling=0.4, seed=5)
    n = 1000
    with_foreground = sum(bool(patches[(0, epoch)][1].any()) for epoch in range(n))
    # random crops hold the blob with probability (6 / 49)^3 ~ 0.2%: the share is ~0.4; 4 binomial sigmas
    assert abs(with_foreground / n - 0.4) < 4 * (0.4 * 0.6 / n) ** 0.5


def test_a_foreground_patch_holds_the_whole_object_and_stays_inside_the_volume():
    label = np.zeros((40, 40, 40), np.uint8)
    label[30:38, 1:5, 10:20] = 1
    label[0:2, 0:2, 0:2] = 1  # a third, smaller kidney object: only the two largest may be chosen
    label[10:11, 10:11, 10:11] = 1
    objects = largest_objects(label)
    assert list(objects) == [1] and len(objects[1]) == 2 and (slice(10, 11),) * 3 not in objects[1]
    big_one, small_one = np.zeros_like(label), np.zeros_like(label)
    big_one[30:38, 1:5, 10:20], small_one[0:2, 0:2, 0:2] = 1, 1
    chosen = set()
    for seed in range(20):
        window = foreground_crop(objects, label.shape, 16, np.random.default_rng(seed))
        assert [s.stop - s.start for s in window] == [16] * 3
        assert all(0 <= s.start and s.stop <= 40 for s in window)
        whole = [obj[window].sum() == obj.sum() for obj in (big_one, small_one)]  # the chosen object entirely inside
        assert any(whole)
        chosen.add(whole.index(True))
    assert chosen == {0, 1}
    big = largest_objects(np.ones((40, 40, 40), np.uint8))  # larger than the patch: shrunk to a patch inside it
    assert [s.stop - s.start for s in foreground_crop(big, (40,) * 3, 16, np.random.default_rng(0))] == [16] * 3
    assert foreground_crop(largest_objects(np.zeros((40,) * 3, np.uint8)), (40,) * 3, 16, np.random.default_rng(0)) \
        is None


def test_random_crops_start_as_the_references_randrange_and_eval_shards_balance_voxels():
    starts = {random_crop((20, 16, 17), 16, np.random.default_rng(seed))[0].start for seed in range(200)}
    assert starts == set(range(4))  # randrange(20 - 16): 0-3, never 4
    assert {random_crop((16, 16, 17), 16, np.random.default_rng(s))[2].start for s in range(50)} == {0}
    cases = [Case(i, None, None, shape) for i, shape in enumerate([(10,) * 3, (40,) * 3, (20,) * 3, (30,) * 3])]
    assert balanced_shards(cases, 2) == [[1], [0, 2, 3]]  # 64,000 voxels vs 1,000 + 8,000 + 27,000
    assert balanced_shards(cases, 6)[4:] == [[], []]  # more ranks than cases: some score none


def test_augmentation_flips_image_and_label_together_and_a_sample_is_a_function_of_seed_epoch_and_case(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, (16, 16, 16)).astype(np.uint8)
    flipped = 0
    for seed in range(50):
        image, out = augment(label.astype(np.float32), label, np.random.default_rng(seed))
        assert ((image > 0.5) == (out > 0)).all()  # brightness scales by 1.7-2.3, noise has sigma <= 0.1
        flipped += not np.array_equal(out, label)
    assert 20 < flipped < 50  # each axis flips with probability 1/3: 1 - (2/3)^3 = 70% of samples
    patches = TrainPatches([corner_blob_case(tmp_path)], patch=16, oversampling=0.4, seed=5)
    a, b, c = patches[(0, 3)], patches[(0, 3)], patches[(0, 4)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    sampler = EpochSampler(patches, num_replicas=1, rank=0, shuffle=True, seed=5)
    sampler.set_epoch(7)
    assert list(sampler) == [(0, 7)]
