"""Raw KiTS19 -> the MLPerf layout (`unet3d.data`), as the reference's preprocess_dataset.py does it.

    python3 -m unet3d.preprocess RAW_DIR OUT_DIR [--checksums checksum.json]
    python3 -m unet3d.preprocess --verify OUT_DIR --checksums checksum.json

RAW_DIR is the KiTS19 `data/` folder: `case_XXXXX/imaging.nii.gz` and
`case_XXXXX/segmentation.nii.gz` for cases 0-209 (later ids have no labels and are
skipped). Per case, read with nibabel (`get_fdata`, then float32 / uint8): when
the voxel spacing (the header's pixdim[1:4]) is not exactly 1.6 x 1.2 x 1.2 mm,
both volumes are resampled to floor(spacing / target x shape) voxels with
`torch.nn.functional.interpolate` (trilinear with align_corners for the image,
nearest for the label); the image is clipped to [-79, 304] HU and normalised
with mean 101 and std 76.9; every side shorter than 128 is padded with edge
values, half before and half after; the arrays are saved with `np.save`.

Hours on the whole dataset: a line per case with the time left; cases already
written (both files whole: each is written to a temporary name and renamed) are
kept, so an interrupted run resumes where it stopped. A case whose image holds
NaN (a broken download) is refused before anything is written for it, and so is
a RAW_DIR without cases — the reference would go on and print "Mean value: nan".
`--checksums` compares every file with the MD5 list the reference ships
(image_segmentation/pytorch/checksum.json), naming each file that differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unet3d.config import RULES
from unet3d.data import DataError, case_paths, open_array, write_case

CASE_DIR = re.compile(r"case_(\d{5})")


class PreprocessError(RuntimeError):
    """The raw data cannot yield the MLPerf dataset."""


def raw_cases(raw_dir: Path) -> list[tuple[int, Path]]:
    """(case id, folder) of each labelled case (ids below 210) under the KiTS19 `data/` folder."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise PreprocessError(f"{raw_dir}: not a directory; expected the KiTS19 data/ folder")
    found = sorted((int(m.group(1)), raw_dir / m.group(0)) for m in map(CASE_DIR.fullmatch,
                   (p.name for p in raw_dir.iterdir() if p.is_dir())) if m)
    cases = [(i, path) for i, path in found if i < RULES.num_cases]
    if not cases:
        raise PreprocessError(f"{raw_dir}: no case_XXXXX folders with ids below {RULES.num_cases}; expected the "
                              "KiTS19 data/ folder (case_00000/imaging.nii.gz, segmentation.nii.gz, ...)")
    return cases


def load_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(image float32 (1, D, H, W), label uint8 (1, D, H, W), voxel spacing) of one raw case."""
    import nibabel  # only preprocessing reads NIfTI

    paths = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
    for path in paths:
        if not path.is_file():
            raise PreprocessError(f"{path}: missing")
    image, label = (nibabel.load(path) for path in paths)
    spacing = image.header["pixdim"][1:4].tolist()
    image_data, label_data = image.get_fdata().astype(np.float32), label.get_fdata().astype(np.uint8)
    if image_data.shape != label_data.shape:
        raise PreprocessError(f"{paths[1]}: shape {label_data.shape} differs from the image's {image_data.shape}")
    return image_data[None], label_data[None], spacing


def resample(image: np.ndarray, label: np.ndarray, spacing: list[float]) -> tuple[np.ndarray, np.ndarray]:
    # The header's spacings are float32, so they practically never equal the target exactly: the reference
    # resamples every case, and so does this (same test, same arithmetic).
    if spacing == list(RULES.target_spacing):
        return image, label
    shape = (np.array(spacing) / np.array(RULES.target_spacing) * np.array(image.shape[1:])).astype(int).tolist()
    image = F.interpolate(torch.from_numpy(image[None]), size=shape, mode="trilinear", align_corners=True)
    label = F.interpolate(torch.from_numpy(label[None]), size=shape, mode="nearest")
    return image[0].numpy(), label[0].numpy()


def normalise(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, *RULES.clip) - RULES.mean) / RULES.std


def pad_to_min_shape(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    short = [max(0, RULES.min_shape - s) for s in image.shape[1:]]
    widths = [(0, 0)] + [(s // 2, s - s // 2) for s in short]
    return np.pad(image, widths, mode="edge"), np.pad(label, widths, mode="edge")


def preprocess_case(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    image, label, spacing = load_pair(folder)
    image, label = resample(image, label, spacing)
    image, label = pad_to_min_shape(normalise(image), label)
    return image.astype(np.float32), label.astype(np.uint8)


def statistics(image: np.ndarray) -> tuple[float, float]:
    """The reference's per-case numbers: mean and std rounded to 2 decimals."""
    return float(np.round(np.mean(image), 2)), float(np.round(np.std(image), 2))


def preprocess(raw_dir: Path, out_dir: Path) -> dict:
    """Every case (module docstring); returns the medians the reference prints."""
    cases = raw_cases(raw_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats, started, done_now = [], time.monotonic(), 0
    for n, (case_id, folder) in enumerate(cases, 1):
        try:
            image = open_array(case_paths(out_dir, case_id)[0], np.float32)
            open_array(case_paths(out_dir, case_id)[1], np.uint8)
            kept = True
        except DataError:
            kept = False
        if not kept:
            image, label = preprocess_case(folder)
        mean, std = statistics(image)
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise PreprocessError(f"{folder}/imaging.nii.gz: the preprocessed volume has mean {mean}, std {std}; "
                                  "the raw image holds NaN or infinite values (a broken download?)")
        if not kept:
            write_case(out_dir, case_id, image, label)
            done_now += 1
        stats.append((mean, std, *image.shape[1:]))
        elapsed = time.monotonic() - started
        left = elapsed / done_now * (len(cases) - n) if done_now else 0.0
        print(f"[{n}/{len(cases)}] {folder.name}: {'kept' if kept else 'written'}, shape {tuple(image.shape)}, "
              f"mean {mean}, std {std}; {elapsed / 60:.1f} min so far, ~{left / 60:.1f} min left", flush=True)
    medians = dict(zip(("mean", "std", "d", "h", "w"), np.median(np.array(stats), axis=0).tolist()))
    print("Mean value: {mean}, std: {std}, d: {d}, h: {h}, w: {w}".format(**medians), flush=True)
    return medians


def verify(out_dir: Path, checksums: Path) -> None:
    """Every file of the reference's MD5 list is in `out_dir` with that MD5; raises naming each that is not."""
    try:
        expected = json.loads(Path(checksums).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PreprocessError(f"{checksums}: not a readable checksum json ({e})") from e
    wrong = []
    for n, (name, md5) in enumerate(sorted(expected.items()), 1):
        path = Path(out_dir) / name
        if not path.is_file():
            wrong.append(f"{name} missing")
        else:
            digest = hashlib.md5()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    digest.update(chunk)
            if digest.hexdigest() != md5:
                wrong.append(f"{name} has MD5 {digest.hexdigest()}, expected {md5}")
        if n % 20 == 0 or n == len(expected):
            print(f"verified {n}/{len(expected)} files", flush=True)
    if wrong:
        raise PreprocessError(f"{out_dir}: {len(wrong)} of {len(expected)} files differ from {checksums}: "
                              + "; ".join(wrong))
    print(f"all {len(expected)} files match {checksums}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="*", help="RAW_DIR OUT_DIR (or, with --verify, nothing)")
    parser.add_argument("--verify", type=Path, default=None, metavar="OUT_DIR", help="only check OUT_DIR")
    parser.add_argument("--checksums", type=Path, default=None, help="the reference's checksum.json")
    args = parser.parse_args(argv)
    try:
        if args.verify is not None:
            if args.checksums is None or args.dirs:
                parser.error("--verify OUT_DIR takes --checksums and no other folders")
            verify(args.verify, args.checksums)
            return 0
        if len(args.dirs) != 2:
            parser.error("expected RAW_DIR OUT_DIR")
        preprocess(*args.dirs)
        if args.checksums is not None:
            verify(args.dirs[1], args.checksums)
    except PreprocessError as e:
        print(f"unet3d.preprocess: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
