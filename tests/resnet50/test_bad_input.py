"""Bad input, table-driven: each case corrupts a copy of a tiny synthetic ImageNet folder layout and runs
`resnet50.train.main` on the CPU config (a few seconds per case, no training to speak of).

The layout is opened up front (`data.build_loaders`: the split and class folders, and every image's directory
entry, before `run_start`); an image's bytes are read only when the loader decodes it, mid-run (a stat or a
header read of each of ImageNet's 1.33M files at open time would cost minutes on a parallel file system), so a
truncated, empty or 16-bit image aborts the run: `run_stop` `aborted`, the file named. The tiny set has 8 train
images and a 64-image batch, so the first step's batch holds every train image: the run fails on step one.
The truncated image is read in the config's DataLoader worker (its error comes back wrapped, the data layer's
message last); the other mid-run cases load in-process (DATALOADER_WORKERS=0), as tearing down a worker that
failed costs a 5 s join each.

Not applicable: an out-of-range label inside a file (ImageNet's labels are the sorted class folders, so the
cases are too many class folders and a val/ class train/ lacks); a wrong array shape (images of any size are
resized; the layout's "shape" is the case of images not in class folders).
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet50 import train
from resnet50.synthetic import SyntheticSpec, write_synthetic
from tests.conftest import RESNET_CPU_CONFIG
from tests.faults import assert_caught, record

TINY = SyntheticSpec(num_classes=2, train_per_class=4, val_per_class=2)


@pytest.fixture(scope="module")
def no_worker_config(tmp_path_factory) -> Path:
    """The CPU config with the loader in-process (same name: DGXSYSTEM comes from it)."""
    config = tmp_path_factory.mktemp("config") / RESNET_CPU_CONFIG.name
    text = RESNET_CPU_CONFIG.read_text()
    assert "export DATALOADER_WORKERS=1" in text
    config.write_text(text.replace("export DATALOADER_WORKERS=1", "export DATALOADER_WORKERS=0"))
    return config


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    """2 classes x (4 train + 2 val) images, written by the benchmark's own synthetic writer (0.1 s)."""
    root = tmp_path_factory.mktemp("imagenet-tiny")
    write_synthetic(root, TINY)
    return root


def a_jpeg(root: Path, split: str = "train") -> Path:
    """An RGB JPEG (not the PNG or the CMYK/grayscale quirks) of the split's first class."""
    return sorted((root / split).glob("*/*.JPEG"))[3]


def truncated(root: Path) -> Path:
    path = a_jpeg(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def zero_bytes(root: Path) -> Path:
    path = a_jpeg(root)
    path.write_bytes(b"")
    return path


def sixteen_bit(root: Path) -> Path:
    path = a_jpeg(root)
    Image.fromarray((np.arange(96 * 96).reshape(96, 96) * 7 % 65536).astype(np.uint16)).save(path, format="PNG")
    return path


def flat_val(root: Path) -> Path:
    """The raw validation release's layout: every image directly under val/, no class folders."""
    for path in list((root / "val").glob("*/*.JPEG")):
        path.rename(root / "val" / path.name)
    for folder in (root / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    return root / "val"


def too_many_classes(root: Path) -> Path:
    for k in range(1001 - TINY.num_classes):  # labels 0..1000: one past the model's 1000 outputs
        (root / "train" / f"n2{k:07d}").mkdir()
    return root / "train"


def val_class_train_lacks(root: Path) -> Path:
    extra = root / "val" / "n99999999"
    extra.mkdir()
    shutil.copy(a_jpeg(root, "val"), extra / "n99999999_00000.JPEG")
    return root


def no_val(root: Path) -> Path:
    shutil.rmtree(root / "val")
    return root / "val"


def no_train(root: Path) -> Path:
    shutil.rmtree(root / "train")
    return root / "train"


def directory_named_as_image(root: Path) -> Path:
    """Root reads any file, so 'unreadable' is an entry that is not a file: a directory with the image's name."""
    path = a_jpeg(root, "val")
    path.unlink()
    path.mkdir()
    return path


OPEN = "data opened before run_start"
READ_IN_WORKER = "image decoded in a DataLoader worker, mid-run (run aborted)"
READ = "image decoded, mid-run (run aborted)"


CASES = [  # (case, corruption, where it is caught, the message after "<file>: ")
    ("truncated image (half its bytes)", truncated, READ_IN_WORKER,
     r"cannot decode image \(image file is truncated.*expected a complete JPEG or PNG file, found \d+ bytes"),
    ("zero-byte image", zero_bytes, READ, r"cannot decode image .*expected a complete JPEG or PNG file, found 0 bytes"),
    ("wrong dtype (16-bit PNG named .JPEG)", sixteen_bit, READ, r"PNG image of I;16 pixels, expected 8-bit"),
    ("wrong shape (val/ flat, no class folders)", flat_val, OPEN,
     r"4 images directly under it .*expected them in class folders val/<wnid>/\*\.JPEG"),
    ("out-of-range label (1001 class folders)", too_many_classes, OPEN,
     r"1001 class folders, the model has 1000 classes \(labels 0-999\)"),
    ("out-of-range label (val/ class train/ lacks)", val_class_train_lacks, OPEN,
     r"different class folders \(only in val/: \['n99999999'\], only in train/: \[\]\); expected the same wnids"),
    ("missing split (val/ removed)", no_val, OPEN, r"val: missing; expected val/<wnid>/\*\.JPEG under"),
    ("missing split (train/ removed)", no_train, OPEN, r"train: missing; expected train/<wnid>/\*\.JPEG under"),
    ("unreadable image (a directory of its name)", directory_named_as_image, OPEN,
     r"not a regular file \(a directory or a broken link\), expected a JPEG or PNG image"),
]


@pytest.mark.parametrize("case, corrupt, caught, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_naming_the_file_and_what_was_expected(tiny_imagenet, no_worker_config, tmp_path, case,
                                                                corrupt, caught, expected):
    root = tmp_path / "imagenet"
    shutil.copytree(tiny_imagenet, root)
    bad = corrupt(root)
    log = tmp_path / "run.log"
    config = no_worker_config if caught == READ else RESNET_CPU_CONFIG
    start = time.monotonic()
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        train.main(["--data-dir", str(root), "--config", str(config), "--seed", "1", "--log-file", str(log)])
    seconds = time.monotonic() - start
    # A DataLoader worker's error comes back wrapped ("Caught ValueError in DataLoader worker process 0.
    # Original Traceback ..."): its last line is the data layer's message.
    message = str(err.value).strip().splitlines()[-1]
    assert f"{bad}: " in message, message
    assert re.search(expected, message), message
    assert_caught(log, before_run_start=caught == OPEN)
    record(case, "resnet50", caught, seconds, None if caught == OPEN else log, message, root)
