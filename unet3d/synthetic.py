"""A small, learnable KiTS19 stand-in in the MLPerf layout: 210 cases, 168 training and the 42 validation ids.

    python3 -m unet3d.synthetic DIR

Each case is a (1, D, H, W) volume, sides drawn from [min_side, max_side],
already "normalised" as the preprocessing leaves real CT ((HU - 101) / 76.9,
clipped to [-79, 304] HU): air outside an elliptic body, soft tissue with a
smooth texture, a bright spine, two kidneys (ellipsoids left and right, label
1) and one tumor (a sphere on the surface of one kidney, darker than the
kidney and brighter than the tissue around it, label 2), plus voxel noise.
Written through `unet3d.data.write_case`, so the reader real runs use is the
one exercised; `SYNTHETIC.json` (common.synthetic) marks the dataset.
Kidney/tumor intensities are drawn around enhanced-CT values (kidney ~180 HU,
tumor ~100 HU, tissue ~40 HU, bone ~300 HU).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from common import synthetic
from unet3d.config import RULES


def hu(value: float) -> float:
    """A Hounsfield value as the preprocessing leaves it (clipped and normalised)."""
    return (float(np.clip(value, *RULES.clip)) - RULES.mean) / RULES.std


@dataclass(frozen=True)
class SyntheticSpec:
    # Volume sides are drawn from [min_side, max_side]: at least the CPU training patch (16), and under 1.25x it, so
    # that the sliding window (stride 8) scores each volume from one window and an evaluation costs 42 forwards.
    min_side: int = 16
    max_side: int = 19
    # Organs the size real ones are next to a 128^3 patch (a kidney about half its side), not next to a whole CT
    # volume: at 16-19 voxels a side, kidneys of (0.22, 0.13, 0.11) x 1.4 semi-axes are ~11 x 6 x 5 voxels.
    kidney_scale: float = 1.4  # kidney semi-axes: (0.22, 0.13, 0.11) of the sides, times this, +-15%
    tumor_radius: float = 0.25  # of the shortest side, +-25%
    noise: float = 0.25  # voxel noise, in normalised units (~19 HU)
    seed: int = 0


def ellipsoid(shape: tuple, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)) <= 1


def draw_case(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    import scipy.ndimage  # here, not at the top: see `synthesize`

    shape = tuple(int(s) for s in rng.integers(spec.min_side, spec.max_side + 1, size=3))
    size = np.array(shape, dtype=np.float64)
    image = np.full(shape, hu(-1000), dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    body = ellipsoid(shape, size / 2, size * [0.7, 0.46, 0.48])
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 2.0) * 4
    image[body] = hu(40) + 0.3 * texture[body]
    spine = ellipsoid(shape, size * [0.5, 0.72, 0.5], size * [0.6, 0.07, 0.07])
    image[spine] = hu(300)
    kidneys = []
    for side in (0.3, 0.7):  # left and right of the spine
        centre = size * [0.5, 0.6, side] + rng.normal(0, 1.0, 3)
        axes = size * [0.22, 0.13, 0.11] * spec.kidney_scale * rng.uniform(0.85, 1.15, 3)
        kidney = ellipsoid(shape, centre, axes)
        image[kidney], label[kidney] = hu(rng.uniform(160, 200)), 1
        kidneys.append((centre, axes))
    centre, axes = kidneys[int(rng.integers(0, 2))]
    direction = rng.normal(size=3)
    on_surface = centre + 0.8 * axes * direction / np.linalg.norm(direction)
    radius = spec.tumor_radius * size.min() * rng.uniform(0.75, 1.25)
    tumor = ellipsoid(shape, on_surface, np.full(3, radius))
    image[tumor], label[tumor] = hu(rng.uniform(90, 110)), 2
    image += rng.normal(0, spec.noise, shape).astype(np.float32)
    return image[None], label[None]


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """All 210 cases, then the marker.

    `unet3d.data` (torch, ~3 s to import on 2 cores) is imported only here: every smoke run first calls
    `python3 -m unet3d.synthetic DIR`, which finds the dataset already written and needs neither.
    """
    from unet3d.data import write_case

    if spec.min_side < 1 or spec.max_side < spec.min_side:
        raise ValueError(f"volume sides from {spec.min_side} to {spec.max_side}")
    root = Path(root)
    rng = np.random.default_rng(spec.seed)
    voxels = kidney = tumor = 0
    for case_id in range(RULES.num_cases):
        image, label = draw_case(rng, spec)
        write_case(root, case_id, image, label)
        voxels, kidney, tumor = voxels + label.size, kidney + int((label == 1).sum()), tumor + int((label == 2).sum())
    return synthetic.write_marker(root, asdict(spec), cases=RULES.num_cases, train_cases=RULES.train_samples,
                                  validation_cases=RULES.eval_samples, kidney_fraction=round(kidney / voxels, 4),
                                  tumor_fraction=round(tumor / voxels, 4))


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
