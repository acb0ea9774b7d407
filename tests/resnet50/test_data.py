import pytest
from PIL import Image

from common.synthetic import is_synthetic
from resnet50.data import ImageFolderDataset, build_loaders, eval_transform
from resnet50.synthetic import SyntheticSpec, write_synthetic


def test_synthetic_dataset_uses_the_imagenet_layout_and_its_quirks(synthetic_imagenet):
    assert is_synthetic(synthetic_imagenet)
    train = ImageFolderDataset(synthetic_imagenet, "train")
    val = ImageFolderDataset(synthetic_imagenet, "val")
    assert train.classes == val.classes and len(train.classes) == 10
    assert all(path.suffix == ".JPEG" for path, _ in train.samples)
    modes, formats = set(), set()
    for path, _ in train.samples:
        with Image.open(path) as image:
            modes.add(image.mode)
            formats.add(image.format)
    assert {"RGB", "L", "CMYK"} <= modes and formats == {"JPEG", "PNG"}
    for index in range(len(train)):  # every quirk decodes to RGB
        image, label = train[index]
        assert image.mode == "RGB" and 0 <= label < 10


def test_labels_follow_sorted_wnid_order(synthetic_imagenet):
    train = ImageFolderDataset(synthetic_imagenet, "train")
    assert train.classes == sorted(train.classes)
    path, label = train.samples[-1]
    assert path.parent.name == train.classes[label]


def test_eval_shards_cover_every_image_exactly_once(synthetic_imagenet):
    seen = 0
    for rank in range(3):
        _, val, _, n_val = build_loaders(synthetic_imagenet, image_size=32, batch_size=8, eval_batch_size=7,
                                         num_workers=0, rank=rank, world_size=3, seed=0)
        seen += sum(labels.numel() for _, labels in val)
    assert seen == n_val == 240


def test_corrupt_image_error_names_the_file(tmp_path):
    write_synthetic(tmp_path, SyntheticSpec(num_classes=2, train_per_class=2, val_per_class=2))
    bad = next((tmp_path / "val").glob("*/*.JPEG"))
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    dataset = ImageFolderDataset(tmp_path, "val", eval_transform(32))
    index = next(i for i, (path, _) in enumerate(dataset.samples) if path == bad)
    with pytest.raises(ValueError, match=f"{bad}: cannot decode image"):
        dataset[index]


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train: missing; expected train/<wnid>/\*\.JPEG"):
        ImageFolderDataset(tmp_path, "train")
