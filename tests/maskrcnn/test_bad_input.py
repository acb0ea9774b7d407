"""Bad input, table-driven: each case corrupts a copy of a tiny COCO 2017-layout set and runs `maskrcnn.train.main` on
it in this process, with the CPU config and a log file.

The set is `maskrcnn.synthetic`'s writer at 5 training images (the fifth has no object and is skipped, the other 4
are one batch of the CPU config, so a bad image is read by the first step) and 4 validation images, with an
untrained ResNet-18 in torchvision's layout as the backbone (the pre-training is not what is tested). A fault in an
instances json or in the backbone file is found while the run is set up, before run_start: the json is read and
checked, the image folder looked for, the backbone loaded. A fault in an image can only be found when the loader
reads it (117k images are not opened up front), on the first batch here: the run ends with run_stop `aborted`, its
log complete. Every error names the file and what it should hold; the fault table (tests/faults.py) gets a row per
case.

"truncated image" reads through a loader worker (DATALOADER_WORKERS=1, as the GPU configs' workers do), whose
error reaches the run wrapped in the worker's traceback, the message last; the other image cases read in the
process (DATALOADER_WORKERS=0, the CPU config's): after a worker's error PyTorch's loader waits 5 s for the
worker when it is collected (not at a process's exit), which would be most of this file's time.

Not applicable to this layout (json, JPEGs, one torch file; no arrays on disk): "wrong dtype" and "wrong shape" of
a stored array. Their counterparts here are a json size of the wrong type, a 16-bit image and an integer backbone
tensor; a bbox of 3 numbers, a polygon of an odd number of coordinates, an image of another size than its json says
and a backbone tensor of the wrong shape.
"""
import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from common.detection import BackboneError, DataError
from maskrcnn import train
from maskrcnn.synthetic import SyntheticSpec, write_images
from tests.conftest import MASKRCNN_CPU_CONFIG
from tests.faults import assert_caught, record

TRAIN_JSON = "annotations/instances_train2017.json"
IMAGE = "train2017/000000000001.jpg"  # an RGB JPEG with objects
BACKBONE = "backbone/resnet18-synthetic.pth"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco-tiny")
    rng = np.random.default_rng(0)
    spec = SyntheticSpec(train_images=5, val_images=4)
    write_images(root, "train", spec.train_images, rng, spec)
    write_images(root, "val", spec.val_images, rng, spec, first_id=1_000_000)
    (root / BACKBONE).parent.mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), root / BACKBONE)
    return root


# The copy's files are hard links to the set's (copying the 45 MB backbone per case is most of a case's time): each
# corruption replaces a file, never writes into it.
def replace(path, content: bytes):
    path.unlink()
    path.write_bytes(content)


def cut(path):
    replace(path, path.read_bytes()[: path.stat().st_size // 2])


def empty(path):
    replace(path, b"")


def as_directory(path):
    path.unlink()
    path.mkdir()


def remove(path):
    shutil.rmtree(path)


def edit_json(change):
    def corrupt(path):
        content = json.loads(path.read_text())
        change(content)
        replace(path, json.dumps(content).encode())
    return corrupt


def edit_backbone(change):
    def corrupt(path):
        state = torch.load(path, weights_only=True)
        change(state)
        path.unlink()
        torch.save(state, path)
    return corrupt


def half_size(path):
    with Image.open(path) as image:
        small = image.resize((image.width // 2, image.height // 2))
    path.unlink()
    small.save(path, format="JPEG")


def sixteen_bit(path):
    with Image.open(path) as image:
        size = image.size
    path.unlink()
    Image.fromarray(np.full(size[::-1], 40000, np.uint16)).save(path, format="PNG")


def first_annotation(**fields):
    return edit_json(lambda c: c["annotations"][0].update(fields))  # annotation 10, of image 1


OPEN, MID_RUN = "data opened before run_start", "image read mid-run (run_stop aborted)"
IN_WORKER = "truncated image"  # the one case read by a loader worker (see the module docstring)
CASES = [  # (case, file corrupted, corruption, error, what the message says after the file's name, where caught)
    ("truncated json", TRAIN_JSON, cut, DataError, r"not readable json .*truncated or corrupt, expected", OPEN),
    ("truncated image", IMAGE, cut, DataError, r"cannot decode image 1 .*truncated.*expected a JPEG or PNG of",
     MID_RUN),
    ("truncated backbone", BACKBONE, cut, BackboneError, r"not a readable state dict .*expected torch\.save", OPEN),
    ("zero-byte json", TRAIN_JSON, empty, DataError, r"empty \(0 bytes\); expected annotations/instances_train",
     OPEN),
    ("zero-byte image", IMAGE, empty, DataError, r"empty \(0 bytes\) \(image 1\); expected a JPEG or PNG", MID_RUN),
    ("zero-byte backbone", BACKBONE, empty, BackboneError, r"empty \(0 bytes\); expected torch\.save", OPEN),
    ("wrong dtype: json width a float", TRAIN_JSON, edit_json(lambda c: c["images"][0].update(width=80.5)),
     DataError, r"image 1 has width 80\.5, expected a positive integer", OPEN),
    ("wrong dtype: 16-bit image", IMAGE, sixteen_bit, DataError, r"holds I;16 pixels .*expected a JPEG or PNG of "
     r"\d+x\d+ 8-bit pixels", MID_RUN),
    ("wrong dtype: int64 backbone tensor", BACKBONE,
     edit_backbone(lambda s: s.update({"conv1.weight": s["conv1.weight"].long()})), BackboneError,
     r"'conv1\.weight' holds torch\.int64 values, expected floating point", OPEN),
    ("wrong shape: bbox of 3 numbers", TRAIN_JSON, first_annotation(bbox=[1.0, 2.0, 30.0]), DataError,
     r"annotation 10 has bbox \[1\.0, 2\.0, 30\.0\], expected \[x, y, w, h\]", OPEN),
    ("wrong shape: polygon of 5 coordinates", TRAIN_JSON, first_annotation(segmentation=[[1.0, 1.0, 9.0, 1.0, 5.0]]),
     DataError, r"annotation 10 has a polygon of 2\.5 points; at least 3 \(x, y\) pairs expected", OPEN),
    ("wrong shape: image of half its size", IMAGE, half_size, DataError, r"is \d+x\d+, the annotations say \d+x\d+",
     MID_RUN),
    ("wrong shape: backbone tensor", BACKBONE,
     edit_backbone(lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)})), BackboneError,
     r"'conv1\.weight' has shape \(64, 3, 3, 3\), the backbone's is \(64, 3, 7, 7\)", OPEN),
    ("out-of-range label", TRAIN_JSON, first_annotation(category_id=91), DataError,
     r"annotation 10 has category_id 91, not one of the file's 80 categories", OPEN),
    ("out-of-range image id", TRAIN_JSON, first_annotation(image_id=999), DataError,
     r"annotation 10 points at image 999, which the file does not list", OPEN),
    ("missing split: val json", "annotations/instances_val2017.json", os.unlink, DataError,
     r": missing; expected annotations/instances_val2017\.json under", OPEN),
    ("missing split: train images", "train2017", remove, DataError,
     r": missing; expected the folder of the 5 images .*instances_train2017\.json lists", OPEN),
    ("missing backbone", "backbone", remove, FileNotFoundError, r"/\*\.pth \(found 0\); pass --backbone-checkpoint",
     OPEN),
    ("unreadable json (a directory)", TRAIN_JSON, as_directory, DataError, r"a directory, not a file; expected",
     OPEN),
    ("unreadable image (a directory)", IMAGE, as_directory, DataError, r"a directory, not a file \(image 1\); "
     r"expected a JPEG", MID_RUN),
    ("unreadable backbone (a directory)", BACKBONE, as_directory, BackboneError,
     r"a directory, not a file; expected torch\.save", OPEN),
]


def own_message(error: BaseException) -> str:
    """The error's message; a DataLoader worker's error arrives wrapped, the worker's traceback first, the message
    last (`common.detection.DataError: <the message>`)."""
    text = str(error).strip()
    if "Original Traceback" not in text:
        return text
    return text.splitlines()[-1].split(": ", 1)[1]


@pytest.mark.parametrize("case, target, corrupt, error, message, where", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_with_the_file_and_what_it_should_hold(tiny, tmp_path, monkeypatch, case, target,
                                                                   corrupt, error, message, where):
    monkeypatch.setenv("DATALOADER_WORKERS", "1" if case == IN_WORKER else "0")
    root = shutil.copytree(tiny, tmp_path / "data", copy_function=os.link)
    corrupt(root / target)
    log = tmp_path / "run.log"
    start = time.perf_counter()
    with pytest.raises(error) as caught:
        train.main(["--data-dir", str(root), "--config", str(MASKRCNN_CPU_CONFIG), "--seed", "1",
                    "--log-file", str(log)])
    seconds = time.perf_counter() - start
    seen = own_message(caught.value)
    assert str(root / target) in seen, seen
    assert caught.match(message)
    assert_caught(log, before_run_start=where == OPEN)
    record(case, "maskrcnn", where, seconds, None if where == OPEN else log, seen, root)
