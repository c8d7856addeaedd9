"""srprior.metrics against scikit-image on real benchmark images, and against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from srprior.metrics import psnr, rgb_to_y, ssim


def _pairs(data_root, dataset, names, scale):
    """(upscaled LR, HR) pairs; PIL bicubic is fine here: only the metric is under test."""
    for name in names:
        lr = Image.open(data_root / dataset / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png").convert("RGB")
        hr = np.asarray(Image.open(data_root / dataset / "HR" / f"{name}.png").convert("RGB"))
        hr = hr[: lr.height * scale, : lr.width * scale]
        yield name, np.asarray(lr.resize((lr.width * scale, lr.height * scale), Image.BICUBIC)), hr


@pytest.mark.parametrize(
    ("dataset", "names", "scale"),
    [("Set5", ["baby", "bird", "butterfly", "head", "woman"], 2),
     ("Set14", ["baboon", "bridge", "comic", "ppt3", "zebra"], 3)],
)
def test_psnr_ssim_match_skimage_on_real_images(data_root, dataset, names, scale):
    for name, sr, hr in _pairs(data_root, dataset, names, scale):
        # skimage has no Y/shave convention: give it the same shaved Y planes. Its Gaussian SSIM filters with
        # 'reflect' padding but averages only the map cropped by (win-1)/2 = 5 px, i.e. exactly our 'valid' map.
        y_sr, y_hr = (rgb_to_y(x)[scale:-scale, scale:-scale] for x in (sr, hr))
        ref_psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
        ref_ssim = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255)
        assert psnr(sr, hr, scale) == pytest.approx(ref_psnr, abs=1e-10), name
        assert ssim(sr, hr, scale) == pytest.approx(ref_ssim, abs=1e-12), name
        assert 20 < psnr(sr, hr, scale) < 40 and 0.5 < ssim(sr, hr, scale) < 1


def test_rgb_to_y_bt601_values():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(px)[0], [16 + 65.481, 16 + 128.553, 16 + 24.966, 16, 235], atol=1e-12)


def test_psnr_constant_offset_by_hand():
    rng = np.random.default_rng(0)
    hr = rng.integers(10, 240, size=(40, 52, 3), dtype=np.uint8)
    sr = hr + np.uint8(3)
    # every Y value moves by 3 * (65.481 + 128.553 + 24.966) / 255 = 3 * 219 / 255
    expected = 20 * math.log10(255 / (3 * 219 / 255))
    assert psnr(sr, hr, scale=2) == pytest.approx(expected, abs=1e-10)
    assert expected == pytest.approx(39.91030, abs=1e-5)
    assert psnr(hr, hr, scale=2) == math.inf
    assert ssim(hr, hr, scale=2) == pytest.approx(1.0, abs=1e-12)


def test_shave_crops_borders_only():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    sr = hr.copy()
    sr[:3] = 0  # damage only the top 3 rows
    assert psnr(sr, hr, scale=3) == math.inf  # default shave = scale = 3 removes them
    assert psnr(sr, hr, scale=2) < 40
    assert psnr(sr, hr, scale=2, shave=4) == math.inf


def test_grey_2d_is_its_own_y_like_matlab():
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, size=(30, 30), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-5, 6, size=hr.shape), 0, 255).astype(np.uint8)
    a, b = sr[2:-2, 2:-2].astype(float), hr[2:-2, 2:-2].astype(float)
    assert psnr(sr, hr, 2) == pytest.approx(10 * math.log10(255**2 / np.mean((a - b) ** 2)), abs=1e-10)
    assert ssim(sr, hr, 2) == pytest.approx(structural_similarity(
        b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255), abs=1e-12)
    # its RGB copy (what the loaders produce) has Y in 16-235: differences shrink by 219/255, PSNR rises
    rgb = lambda x: np.repeat(x[..., None], 3, axis=2)  # noqa: E731
    assert psnr(rgb(sr), rgb(hr), 2) - psnr(sr, hr, 2) == pytest.approx(20 * math.log10(255 / 219), abs=1e-10)


def test_bad_input_names_the_problem():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, np.zeros((20, 22, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="too small"):
        ssim(a, a, 2, shave=5)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(np.zeros((4, 4, 4)))
