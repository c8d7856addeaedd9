"""MATLAB-exact bicubic: bit-exact against every shipped LR file and against a scalar reference implementation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from srprior.data.imresize import bicubic_lr, imresize, modcrop
from srprior.data.io import read_image


def _cubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _reference_1d(vec: list[int], out_len: int, scale: float) -> list[int]:
    """Scalar transcription of MATLAB imresize's contributions() + one uint8 pass (clamped borders)."""
    width = 4 / scale if scale < 1 else 4.0
    out = []
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + t for t in range(math.ceil(width) + 2)]
        if scale < 1:
            w = [scale * _cubic(scale * (u - j)) for j in taps]
        else:
            w = [_cubic(u - j) for j in taps]
        total = sum(w)
        acc = 0.0
        for j, wj in zip(taps, w):
            if wj != 0:
                acc += wj / total * vec[min(max(j, 1), len(vec)) - 1]
        out.append(min(max(math.floor(acc + 0.5), 0), 255))
    return out


def _reference(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    cols = np.array([_reference_1d(img[:, x].tolist(), oh, scale) for x in range(w)]).T  # height first
    return np.array([_reference_1d(cols[y].tolist(), ow, scale) for y in range(oh)], dtype=np.uint8)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4])
def test_matches_scalar_reference(scale):
    rng = np.random.default_rng(int(scale * 12))
    img = rng.integers(0, 256, (12, 17), dtype=np.uint8)
    img[3:6, 4:9] = 255  # saturated block: overshoot must clip
    img[7:, :5] = 0
    np.testing.assert_array_equal(imresize(img, scale), _reference(img, scale))


def test_channels_are_independent_and_2d_matches_3d():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 14, 3), dtype=np.uint8)
    out = imresize(rgb, 1 / 2)
    assert out.shape == (10, 7, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], imresize(rgb[..., c], 1 / 2))


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2, 3, 4])
def test_constant_image_stays_constant(scale):
    out = imresize(np.full((24, 36, 3), 137, np.uint8), scale)
    assert out.shape == (math.ceil(24 * scale), math.ceil(36 * scale), 3)
    assert np.all(out == 137)


def test_modcrop_is_top_left():
    img = np.arange(7 * 10 * 3, dtype=np.uint8).reshape(7, 10, 3)
    np.testing.assert_array_equal(modcrop(img, 3), img[:6, :9])
    np.testing.assert_array_equal(modcrop(img, 2), img[:6, :10])
    with pytest.raises(ValueError, match="smaller than the scale"):
        modcrop(img[:2], 3)


def test_bicubic_lr_is_imresize_of_modcrop():
    img = np.random.default_rng(2).integers(0, 256, (31, 26, 3), dtype=np.uint8)
    lr = bicubic_lr(img, 3)
    assert lr.shape == (10, 8, 3)
    np.testing.assert_array_equal(lr, imresize(img[:30, :24], 1 / 3))


def test_rejects_non_uint8():
    with pytest.raises(TypeError, match="uint8"):
        imresize(np.zeros((8, 8, 3), np.float32), 0.5)


@pytest.mark.slow
def test_reproduces_every_shipped_lr_file(data_root: Path):
    """All 457 LR_bicubic files (Set5/Set14/BSD100 x2-x4, Urban100 x4) equal bicubic_lr(HR) bit for bit."""
    lr_files = sorted(data_root.glob("*/LR_bicubic/X*/*.png"))
    assert len(lr_files) == 457
    by_hr: dict[Path, list[tuple[int, Path]]] = {}
    for lr_path in lr_files:
        k = int(lr_path.parent.name[1:])
        hr_path = lr_path.parents[2] / "HR" / (lr_path.stem[: -len(f"x{k}")] + ".png")
        by_hr.setdefault(hr_path, []).append((k, lr_path))
    mismatches, checked = [], 0
    for hr_path, lrs in by_hr.items():
        hr = read_image(hr_path)  # decode each HR once for all its scales
        for k, lr_path in lrs:
            ours, theirs = bicubic_lr(hr, k), read_image(lr_path)
            checked += 1
            if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
                mismatches.append(str(lr_path.relative_to(data_root)))
    assert checked == 457 and mismatches == []
