"""PSNR / SSIM on the Y channel, the way the SR literature (EDSR, RCAN, ...) reports them.

Conventions (these decide the second decimal, so they are fixed here once):
- Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on 0-255 RGB (ITU-R BT.601), float64, not rounded
  (MATLAB `rgb2ycbcr(im2double(x))*255`). A 2-D grey image is its own Y, as in the MATLAB scripts.
  Note: our loaders turn grey files into RGB (R=G=B), whose Y spans only 16-235; on Set14 (bridge.png is
  grey) that scores +0.09 dB over MATLAB-script tables (bicubic x2: 30.33 vs 30.24), like EDSR's Python code.
- `shave` pixels (default: the scale) are cropped at every border before either metric.
- PSNR: 10 log10(255^2 / MSE); identical images give +inf.
- SSIM: Wang et al. 2004 / MATLAB `ssim_index`: 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03,
  L=255, population (co)variances, 'valid' filtering, mean of the SSIM map, no automatic downsampling.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_SSIM_RADIUS = 5  # 11x11 window
_SSIM_SIGMA = 1.5


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma (float64, 16-235) of a 0-255 RGB image (H,W,3); a grey (H,W) image is returned as is."""
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 3:
        return 16.0 + arr @ _Y_WEIGHTS
    raise ValueError(f"rgb_to_y expects an (H,W,3) RGB or (H,W) grey image, got shape {arr.shape}")


def _shaved_y(sr: np.ndarray, hr: np.ndarray, shave: int, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    sr, hr = np.asarray(sr), np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr must have the same shape, got sr {sr.shape} vs hr {hr.shape} "
                         "(modcrop hr to scale * lr size)")
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    h, w = sr.shape[:2]
    if min(h, w) - 2 * shave < min_size:
        raise ValueError(f"image {sr.shape} is too small for shave={shave} (needs >= {min_size} px left)")
    crop = (slice(shave, h - shave), slice(shave, w - shave))
    return rgb_to_y(sr)[crop], rgb_to_y(hr)[crop]


def psnr(sr: np.ndarray, hr: np.ndarray, scale: int, shave: int | None = None) -> float:
    """PSNR (dB) on Y after cropping `shave` (default `scale`) border pixels."""
    y_sr, y_hr = _shaved_y(sr, hr, scale if shave is None else shave)
    mse = np.mean((y_sr - y_hr) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _gaussian_window_1d() -> np.ndarray:
    x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return g / g.sum()  # outer(g, g) is MATLAB's fspecial('gaussian', 11, 1.5)


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only positions where the window fits ('valid')."""
    r = _SSIM_RADIUS
    out = correlate1d(correlate1d(x, g, axis=0), g, axis=1)
    return out[r:-r, r:-r]


def ssim(sr: np.ndarray, hr: np.ndarray, scale: int, shave: int | None = None) -> float:
    """Mean SSIM on Y after cropping `shave` (default `scale`) border pixels."""
    y_sr, y_hr = _shaved_y(sr, hr, scale if shave is None else shave, min_size=2 * _SSIM_RADIUS + 1)
    g = _gaussian_window_1d()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = _filter_valid(y_sr, g), _filter_valid(y_hr, g)
    var_x = _filter_valid(y_sr * y_sr, g) - mu_x**2
    var_y = _filter_valid(y_hr * y_hr, g) - mu_y**2
    cov = _filter_valid(y_sr * y_hr, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
