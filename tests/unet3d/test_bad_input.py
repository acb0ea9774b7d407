"""Bad input, table-driven: each corruption of a copy of the synthetic KiTS19 set fails naming the file and what was
expected — before run_start where a file's header or size shows it (`read_split` reads no data), mid-run with
run_stop `aborted` where only the data does (a label outside 0-2).

The copy links every file of the session's set and copies only the file a case corrupts. The evaluation list is
`config.VALIDATION_CASES`, code rather than a file: its "missing split" is the 42 validation cases removed (a
missing training split is the same check, `read_split`'s missing ids). Cases of the task that do not apply: none.
"""
import re
import shutil
import time

import numpy as np
import pytest

from tests.conftest import UNET3D_CPU_CONFIG
from tests.faults import assert_caught, record
from unet3d import data, train
from unet3d.config import VALIDATION_CASES

SEED = 5
CASE = 1  # a training case
DIMS = r"\(1, \d+, \d+, \d+\)"


def linked_copy(src, dst):
    dst.mkdir()
    for path in src.iterdir():
        (dst / path.name).symlink_to(path)
    return dst


def own(path):
    """`path` made a real copy of the file it links to, so that corrupting it leaves the shared set alone."""
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)
    return path


def truncated(root):
    image = own(data.case_paths(root, CASE)[0])
    image.write_bytes(image.read_bytes()[:image.stat().st_size // 2])
    return rf"{image}: not a complete \.npy file \(\d+ bytes, its header's float32 {DIMS} needs \d+\); truncated"


def zero_bytes(root):
    label = data.case_paths(root, CASE)[1]
    label.unlink()
    label.write_bytes(b"")
    return rf"{label}: empty \(0 bytes\); expected a \.npy file of uint8 \(1, D, H, W\)"


def not_npy(root):
    label = data.case_paths(root, CASE)[1]
    size = label.stat().st_size
    label.unlink()
    label.write_bytes(np.random.default_rng(0).bytes(size))
    return rf"{label}: not a complete \.npy file \(the magic string is not correct.*\); truncated or corrupt"


def wrong_dtype(root):
    image = own(data.case_paths(root, CASE)[0])
    np.save(image, np.load(image).astype(np.float64))
    return rf"{image}: float64 {DIMS}; expected float32 \(1, D, H, W\)"


def wrong_shape(root):
    label = own(data.case_paths(root, CASE)[1])
    np.save(label, np.load(label)[0])  # no channel axis
    return rf"{label}: uint8 \(\d+, \d+, \d+\); expected uint8 \(1, D, H, W\)"


def shapes_differ(root):
    image, label = data.case_paths(root, CASE)
    own(label)
    np.save(label, np.load(label)[:, 1:])
    return rf"{label}: shape {DIMS} differs from {image.name}'s {DIMS}"


def missing_split(root):
    for case_id in VALIDATION_CASES:
        for path in data.case_paths(root, case_id):
            path.unlink()
    return (rf"{root}: case\(s\) 00000, 00003, .* missing; expected .* for cases 0-209 .*; missing: 42 of the 42 "
            r"validation cases \(config\.VALIDATION_CASES\), 0 of the 168 training cases")


def directory(root):
    # The tests run as root, who reads any file whatever its mode: a directory where the file should be instead.
    image = data.case_paths(root, CASE)[0]
    image.unlink()
    image.mkdir()
    return rf"{image}: a directory; expected a \.npy file of float32 \(1, D, H, W\)"


def first_training_case(root) -> int:
    """The case id of the run's first training sample (epoch 1 of `EpochSampler` at SEED, one process)."""
    cases, _ = data.read_split(root)
    sampler = data.EpochSampler(range(len(cases)), num_replicas=1, rank=0, shuffle=True, seed=SEED, drop_last=True)
    sampler.set_epoch(1)
    return cases[next(iter(sampler))[0]].id


def label_out_of_range(root):
    # Only the data shows it (reading every label up front reads the dataset): found when the case is first read.
    label = own(data.case_paths(root, first_training_case(root))[1])
    volume = np.load(label)
    volume[0, 1, 2, 3] = 7
    np.save(label, volume)
    return rf"{label}: label 7 at voxel \(1, 2, 3\); expected 0 \(background\), 1 \(kidney\), 2 \(tumor\)"


UP_FRONT = "data opened before run_start (read_split)"
MID_RUN = "first read mid-run (TrainPatches, 1 loader worker)"
CASES = [("truncated x.npy", truncated, UP_FRONT), ("zero-byte y.npy", zero_bytes, UP_FRONT),
         ("not a .npy file", not_npy, UP_FRONT), ("wrong dtype x.npy", wrong_dtype, UP_FRONT),
         ("wrong shape y.npy", wrong_shape, UP_FRONT), ("x/y shapes differ", shapes_differ, UP_FRONT),
         ("validation cases missing", missing_split, UP_FRONT), ("x.npy a directory", directory, UP_FRONT),
         ("label out of range", label_out_of_range, MID_RUN)]


@pytest.mark.parametrize("case, corrupt, where", CASES, ids=[c[0] for c in CASES])
def test_a_corrupt_dataset_fails_naming_the_file_and_what_was_expected(case, corrupt, where, tmp_path,
                                                                        unet3d_synthetic, monkeypatch):
    root = linked_copy(unet3d_synthetic, tmp_path / "kits19")
    expected = corrupt(root)
    log = tmp_path / "run.log"
    for name in ("MAX_EPOCHS", "START_EVAL_AT"):  # the mid-run case fails at its first sample: at most an epoch
        monkeypatch.setenv(name, "1")
    start = time.monotonic()
    with pytest.raises(data.DataError, match=expected) as error:
        train.main(["--data-dir", str(root), "--config", str(UNET3D_CPU_CONFIG), "--seed", str(SEED),
                    "--log-file", str(log)])
    seconds = time.monotonic() - start
    assert_caught(log, before_run_start=where == UP_FRONT)
    # With loader workers, PyTorch re-raises as "Caught DataError in DataLoader worker process 0" + the worker's
    # traceback; the message is its line naming the file.
    message = next(line for line in str(error.value).splitlines() if re.search(expected, line))
    message = message.removeprefix(f"{data.DataError.__module__}.{data.DataError.__name__}: ")
    record(case, "unet3d", where, seconds, None if where == UP_FRONT else log,
           message, root)
