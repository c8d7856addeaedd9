"""Local Attribution Maps (Gu & Dong, CVPR 2021) and the Diffusion Index (thesis Eq. 4.7-4.8).

LAM is integrated gradients along a progressive-blur path: x(a) = blur(x, sigma*(1-a)), a in [0, 1], from the
baseline blur(x, sigma) to the image x, of the objective "sum of the gradient magnitude of the SR output in a
window". As in the reference code: sigma = 1.2, 50 steps, 9x9 isotropic Gaussian kernels with reflect-101 borders,
gradient magnitude sqrt(dy^2 + dx^2) from forward differences, right Riemann sum
sum_i grad F(x_i) * (x_i - x_{i-1}). The sum therefore telescopes to F(image) - F(baseline) (IG completeness).
Unlike the reference (one backward per step), path points are batched: `chunk` points per backward.

DI protocol of this platform (metric `di`): images = the 7 LAM demo inputs (256x256 HR crops of Urban100, the
public stand-in for the unpublished HardCases set), LR = MATLAB bicubic of modcrop(HR, scale); one 16x16 HR window
at the image centre (`di_windows`); `di` = mean DI over images.

DI follows the LAM reference code (X-Lowlevel-Vision/LAM_Demo: `grad_abs_norm`, then `gini`): the attribution
map is |sum over RGB of the signed attribution| ("abs-of-sum"), divided by its maximum, plus 1e-7, and
DI = (1 - Gini) * 100 (Eq. 4.7-4.8). Eq. 4.7 calls g "the absolute value of the attribution map" without
saying how channels combine; "sum-of-abs" (sum over RGB of |attribution|, the l1 norm the prior uses) is the
other reading. The max-normalisation makes DI independent of the attribution's scale; the 1e-7 floor adds
(100 - DI) * 1e-7 / (m + 1e-7) to DI, m = mean of the normalised map: under 0.01 when m >= 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Window = tuple[int, int, int]  # (y, x, size): top-left corner and side, in SR (HR) pixels

DI_IMAGES = tuple(f"LAM_demo/test_images/{i}.png" for i in range(1, 8))  # relative to the benchmark data root
DI_WINDOW = 16
DI_CHANNELS = ("abs-of-sum", "sum-of-abs")  # the LAM reference's channel reduction first (the default)
_GINI_FLOOR = 1e-7  # the reference adds it to the max-normalised map before the Gini


@dataclass(frozen=True)
class LAMConfig:
    """Blur path of the LAM reference: sigma 1.2 -> 0 in `steps` steps, `kernel_size`^2 Gaussian kernels."""

    sigma: float = 1.2
    steps: int = 50
    kernel_size: int = 9
    chunk: int = 10  # path points per batched forward/backward; trades memory for speed, not results

    def __post_init__(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"LAMConfig.sigma must be > 0, got {self.sigma}")
        if self.steps < 1 or self.chunk < 1:
            raise ValueError(f"LAMConfig.steps and .chunk must be >= 1, got {self.steps}, {self.chunk}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"LAMConfig.kernel_size must be odd and >= 1, got {self.kernel_size}")


@dataclass(frozen=True)
class Attribution:
    """Signed LAM attribution (3,H,W) plus the objective at both path ends (for the completeness check)."""

    raw: np.ndarray
    objective_image: float
    objective_baseline: float

    @property
    def map(self) -> np.ndarray:
        """(H,W) map of the reference reduction (|sum over channels|): what DI and the figures use."""
        return channel_map(self.raw)


def channel_map(attr: np.ndarray, channels: str = DI_CHANNELS[0]) -> np.ndarray:
    """Non-negative (H,W) map of a signed (C,H,W) attribution: |sum_c A_c| ("abs-of-sum", LAM reference) or
    sum_c |A_c| ("sum-of-abs"); an (H,W) map is just |attr|."""
    if channels not in DI_CHANNELS:
        raise ValueError(f"channels={channels!r}: use one of {', '.join(DI_CHANNELS)}")
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 3:
        return np.abs(a.sum(axis=0)) if channels == "abs-of-sum" else np.abs(a).sum(axis=0)
    if a.ndim != 2:
        raise ValueError(f"expected an (H,W) or (C,H,W) attribution map, got shape {a.shape}")
    return np.abs(a)


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """Normalised isotropic Gaussian (size,size), float64; sigma = 0 gives the identity (delta) kernel."""
    ax = torch.arange(size, dtype=torch.float64) - size // 2
    if sigma == 0:
        return (ax[:, None] == 0).double() * (ax[None, :] == 0).double()
    k = torch.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def blur_path(lr: Tensor, cfg: LAMConfig = LAMConfig()) -> Tensor:
    """Path points (steps+1, C, H, W): index 0 is the baseline blur(lr, sigma), the last is lr itself."""
    c, h, w = lr.shape
    pad = cfg.kernel_size // 2
    if min(h, w) <= pad:
        raise ValueError(f"LR image {h}x{w} is too small for a {cfg.kernel_size}x{cfg.kernel_size} blur kernel")
    sigmas = np.linspace(cfg.sigma, 0.0, cfg.steps + 1)
    kernels = torch.stack([gaussian_kernel(cfg.kernel_size, float(s)) for s in sigmas])
    kernels = kernels.to(device=lr.device, dtype=lr.dtype)[:, None]  # (steps+1, 1, k, k)
    padded = F.pad(lr[:, None], (pad, pad, pad, pad), mode="reflect")  # (C, 1, H+2p, W+2p); reflect-101 as cv2
    return F.conv2d(padded, kernels).transpose(0, 1).contiguous()  # (steps+1, C, H, W)


def window_objective(sr: Tensor, window: Window) -> Tensor:
    """Per-sample LAM objective (B,): sum over channels and window of sqrt(dy^2 + dx^2) (forward differences)."""
    y, x, size = window
    crop = sr[:, :, y : y + size + 1, x : x + size + 1]
    dy = (crop[:, :, :-1, :-1] - crop[:, :, 1:, :-1]) ** 2
    dx = (crop[:, :, :-1, :-1] - crop[:, :, :-1, 1:]) ** 2
    # clamp: sqrt'(0) is inf and gives NaN gradients where the output is flat; the reference zeroes those NaNs
    return torch.sqrt((dy + dx).clamp_min(1e-12)).sum(dim=(1, 2, 3))


def _as_tensor(lr_image: np.ndarray | Tensor) -> Tensor:
    if isinstance(lr_image, np.ndarray):
        if lr_image.dtype != np.uint8 or lr_image.ndim != 3 or lr_image.shape[2] != 3:
            raise ValueError(f"LR numpy image must be uint8 (H,W,3), got {lr_image.dtype} {lr_image.shape}")
        return torch.from_numpy(np.array(lr_image)).permute(2, 0, 1).float() / 255.0  # copy: views may be read-only
    t = lr_image.detach().float()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3:
        raise ValueError(f"LR tensor must be (3,H,W) or (1,3,H,W) in [0,1], got shape {tuple(lr_image.shape)}")
    return t


def _check_window(window: Window, sr_shape: tuple[int, int]) -> None:
    y, x, size = window
    if size < 1 or y < 0 or x < 0 or y + size + 1 > sr_shape[0] or x + size + 1 > sr_shape[1]:
        raise ValueError(f"window (y={y}, x={x}, size={size}) must lie inside the SR output {sr_shape} "
                         "with one spare row/column for the forward differences")


def path_attribution(model: nn.Module, lr_image: np.ndarray | Tensor, window: Window,
                     cfg: LAMConfig = LAMConfig()) -> Attribution:
    """LAM for one window; `lr_image` is uint8 (H,W,3) or a [0,1] tensor. The model runs in eval mode."""
    device = next(model.parameters()).device
    lr = _as_tensor(lr_image).to(device)
    path = blur_path(lr, cfg)
    deltas = path[1:] - path[:-1]  # x_i - x_{i-1}, paired with the gradient at x_i
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ends = model(path[[0, -1]])
        _check_window(window, tuple(ends.shape[-2:]))
        objective = window_objective(ends, window)
        total = torch.zeros_like(lr, dtype=torch.float64)
        for start in range(0, cfg.steps, cfg.chunk):
            idx = slice(start, min(start + cfg.chunk, cfg.steps))
            points = path[1:][idx].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(window_objective(model(points), window).sum(), points)
            total += (grad * deltas[idx]).double().sum(dim=0)
    finally:
        model.train(was_training)
    return Attribution(total.cpu().numpy(), float(objective[1]), float(objective[0]))


def lam(model: nn.Module, lr_image: np.ndarray | Tensor, window: Window,
        cfg: LAMConfig = LAMConfig(), channels: str = DI_CHANNELS[0]) -> np.ndarray:
    """LAM attribution map (H,W) of the LR input, channels reduced by `channel_map` (float64)."""
    return channel_map(path_attribution(model, lr_image, window, cfg).raw, channels)


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values, Eq. 4.7, in O(n log n): sum_i (2i-n-1) x_(i) / (n sum x)."""
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    if v.size == 0 or v[0] < 0 or not np.isfinite(v).all():
        raise ValueError("gini needs a non-empty array of finite, non-negative values (take |attribution|)")
    total = v.sum()
    if total == 0:
        raise ValueError("gini is undefined for an all-zero attribution map")
    n = v.size
    i = np.arange(1, n + 1, dtype=np.float64)
    return float(np.dot(2 * i - n - 1, v) / (n * total))


def diffusion_index(attr: np.ndarray, channels: str = DI_CHANNELS[0]) -> float:
    """DI = (1 - Gini) * 100 (Eq. 4.8) of the reference map: `channel_map`, / max, + 1e-7; larger = more pixels."""
    a = channel_map(attr, channels)
    peak = a.max() if a.size else 0.0
    if not np.isfinite(peak) or peak == 0:
        raise ValueError("diffusion_index needs a finite attribution map that is not all zero")
    return (1.0 - gini(a / peak + _GINI_FLOOR)) * 100.0


def di_windows(image_shape: tuple[int, ...], scale: int, size: int = DI_WINDOW) -> list[Window]:
    """The documented DI windows of an LR image of `image_shape` (H,W[,C]): the centred `size`^2 HR window."""
    hs, ws = image_shape[0] * scale, image_shape[1] * scale
    if min(hs, ws) < size + 1:
        raise ValueError(f"SR size {hs}x{ws} is too small for a {size}x{size} DI window")
    return [((hs - size) // 2, (ws - size) // 2, size)]


def di_images(root: str | Path, scale: int) -> list[np.ndarray]:
    """LR inputs of the DI protocol: MATLAB-bicubic downscales of the LAM demo images under the data root."""
    from srprior.data.imresize import bicubic_lr
    from srprior.data.io import read_image

    return [bicubic_lr(read_image(Path(root) / rel), scale) for rel in DI_IMAGES]


def di_maps(model: nn.Module, images: list[np.ndarray], scale: int, cfg: LAMConfig = LAMConfig(),
            channels: str = DI_CHANNELS[0]) -> list[tuple[np.ndarray, Window, np.ndarray]]:
    """(LR image, window, LAM map) for the `di_windows` of each LR image (uint8 (H,W,3) or objects with an `.lr`
    field): what `mean_di` averages and the LAM figure draws, computed once for both."""
    maps = []
    for img in images:
        lr = getattr(img, "lr", img)
        maps += [(lr, win, lam(model, lr, win, cfg, channels)) for win in di_windows(lr.shape, scale)]
    if not maps:
        raise ValueError("DI needs at least one image")
    return maps


def mean_di(model: nn.Module, images: list[np.ndarray], scale: int, cfg: LAMConfig = LAMConfig(),
            channels: str = DI_CHANNELS[0]) -> float:
    """Mean DI over the `di_maps` of the LR images."""
    return float(np.mean([diffusion_index(m) for _, _, m in di_maps(model, images, scale, cfg, channels)]))


def lam_figure(lr: np.ndarray, attr: np.ndarray, window: Window, path: str | Path, scale: int,
               title: str | None = None) -> Path:
    """PNG like thesis Fig. 4.3: the input with the window, the LAM map (colourbar) and the map on the input.

    The map is drawn with a square-root colour scale, so the faint far-away contributions that DI counts stay
    visible next to the peak; the colourbar keeps the true values."""
    from matplotlib.colors import PowerNorm
    from matplotlib.lines import Line2D

    from srprior.method.figures import POI_COLOR, HALO, bare, box, canvas, save, zoom

    h, w = lr.shape[:2]
    extent = (0, w * scale, h * scale, 0)  # HR coordinates: the window needs no conversion
    heat = channel_map(attr)
    heat = heat / heat.max() if heat.max() > 0 else heat
    k = zoom(max(h, w))
    fig = canvas(3 * w * k + 200, h * k + 150)
    axes = fig.subplots(1, 3)
    axes[0].imshow(lr, extent=extent, interpolation="nearest")
    shown = axes[1].imshow(heat, extent=extent, cmap="magma", norm=PowerNorm(0.5, 0, 1), interpolation="nearest")
    fig.colorbar(shown, ax=axes[1], shrink=0.9, label="attribution / max")
    axes[2].imshow(lr, extent=extent, interpolation="nearest")
    axes[2].imshow(heat, extent=extent, cmap="magma", norm=PowerNorm(0.5, 0, 1), alpha=0.6, interpolation="nearest")
    y, x, size = window
    for ax, name in zip(axes, (f"LR input ({w}×{h})", "LAM attribution", f"overlay · DI = {diffusion_index(attr):.2f}")):
        box(ax, y, x, size, POI_COLOR)
        ax.set_title(name, fontsize=10)
        bare(ax)
    window_key = Line2D([], [], color=POI_COLOR, linewidth=2.5, path_effects=HALO,
                        label=f"window: the {size}×{size} SR pixels whose output is explained")
    fig.legend(handles=[window_key], loc="outside lower center", fontsize=9, facecolor="#f2f2f2",
               title="bright: input pixels that change it most · DI: higher = more pixels involved (0-100)",
               title_fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)
