"""Raw KiTS19 NIfTI -> the MLPerf numpy layout on tiny cases written here, with nibabel."""
import hashlib
import json

import nibabel
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet3d import preprocess
from unet3d.data import case_paths, read_case


def write_raw(root, case_id, image, label, spacing):
    folder = root / f"case_{case_id:05d}"
    folder.mkdir(parents=True)
    for name, data in (("imaging.nii.gz", image), ("segmentation.nii.gz", label)):
        nifti = nibabel.Nifti1Image(data, np.eye(4))
        nifti.header.set_zooms(spacing)
        nibabel.save(nifti, folder / name)
    return folder


def raw_case(seed, shape=(20, 30, 25)):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-300, 500, shape).astype(np.float32)  # HU, beyond both clip limits
    label = np.zeros(shape, np.uint8)
    label[5:15, 10:20, 5:15] = 1
    label[8:12, 12:16, 8:12] = 2
    return image, label


def reference_steps(image, label, spacing):
    """The reference's preprocess_dataset.py, step by step, as its README and code describe it."""
    spacing = np.array(spacing, np.float32).tolist()  # NIfTI stores pixdim as float32
    shape = (np.array(spacing) / np.array([1.6, 1.2, 1.2]) * np.array(image.shape)).astype(int).tolist()
    x = F.interpolate(torch.from_numpy(image)[None, None], size=shape, mode="trilinear", align_corners=True)[0]
    y = F.interpolate(torch.from_numpy(label)[None, None], size=shape, mode="nearest")[0]
    x = (np.clip(x.numpy(), -79.0, 304.0) - 101.0) / 76.9
    pad = [(0, 0)] + [((128 - s) // 2 if s < 128 else 0, 128 - s - (128 - s) // 2 if s < 128 else 0) for s in shape]
    return np.pad(x, pad, mode="edge").astype(np.float32), np.pad(y.numpy(), pad, mode="edge").astype(np.uint8)


def test_a_case_is_resampled_clipped_normalised_and_padded_as_the_reference_does(tmp_path):
    image, label = raw_case(0)
    write_raw(tmp_path / "raw", 3, image, label, (3.2, 2.4, 2.0))
    preprocess.preprocess(tmp_path / "raw", tmp_path / "out")
    case = read_case(tmp_path / "out", 3)
    x, y = (np.load(p) for p in case_paths(tmp_path / "out", 3))
    ex, ey = reference_steps(image, label, (3.2, 2.4, 2.0))
    assert x.shape == ex.shape == (1, 128, 128, 128) and case.shape == (128, 128, 128)
    assert np.array_equal(x, ex) and np.array_equal(y, ey)  # bit for bit
    assert x.min() == pytest.approx((-79 - 101) / 76.9) and x.max() == pytest.approx((304 - 101) / 76.9)
    assert set(np.unique(y)) == {0, 1, 2}


def test_an_interrupted_run_resumes_and_keeps_finished_cases(tmp_path, capsys):
    for case_id in (0, 1):
        write_raw(tmp_path / "raw", case_id, *raw_case(case_id, (10, 12, 8)), (1.6, 1.2, 1.2))
    preprocess.preprocess(tmp_path / "raw", tmp_path / "out")
    first = case_paths(tmp_path / "out", 0)[0].stat().st_mtime_ns
    case_paths(tmp_path / "out", 1)[1].unlink()  # as if stopped while writing case 1
    capsys.readouterr()
    preprocess.preprocess(tmp_path / "raw", tmp_path / "out")
    out = capsys.readouterr().out
    assert "[1/2] case_00000: kept" in out and "[2/2] case_00001: written" in out and "min left" in out
    assert case_paths(tmp_path / "out", 0)[0].stat().st_mtime_ns == first
    assert "Mean value:" in out and "nan" not in out


def test_nan_statistics_and_an_empty_raw_folder_are_refused_naming_the_culprit(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert preprocess.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert f"{tmp_path / 'empty'}: no case_XXXXX folders" in capsys.readouterr().out
    image, label = raw_case(0, (10, 12, 8))
    image[0, 0, 0] = np.nan
    folder = write_raw(tmp_path / "raw", 4, image, label, (1.6, 1.2, 1.2))
    with pytest.raises(preprocess.PreprocessError, match=f"{folder}/imaging.nii.gz: .* NaN"):
        preprocess.preprocess(tmp_path / "raw", tmp_path / "out")
    assert not case_paths(tmp_path / "out", 4)[0].exists()


def test_checksums_pass_on_the_written_files_and_name_a_changed_one(tmp_path, capsys):
    write_raw(tmp_path / "raw", 0, *raw_case(0, (10, 12, 8)), (1.6, 1.2, 1.2))
    out = tmp_path / "out"
    preprocess.preprocess(tmp_path / "raw", out)
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.npy"))}
    (tmp_path / "checksum.json").write_text(json.dumps(sums))
    assert preprocess.main(["--verify", str(out), "--checksums", str(tmp_path / "checksum.json")]) == 0
    assert "all 2 files match" in capsys.readouterr().out
    x = case_paths(out, 0)[0]
    data = bytearray(x.read_bytes())
    data[-1] ^= 1
    x.write_bytes(bytes(data))
    assert preprocess.main(["--verify", str(out), "--checksums", str(tmp_path / "checksum.json")]) == 1
    printed = capsys.readouterr().out
    assert "1 of 2 files differ" in printed and f"case_00000_x.npy has MD5 {hashlib.md5(data).hexdigest()}" in printed
