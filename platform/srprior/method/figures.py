"""Per-trial figures: the SR comparison strip, the extractor (thesis Fig. 3.2) and the shared canvas.

matplotlib's object API on an Agg canvas (no pyplot, no global backend switch): safe in notebooks and headless
Ray workers alike. Every figure uses constrained layout, so titles, colourbars and legends never overlap, and
draws tiny crops with nearest-neighbour zoom, so a 48×48 LR crop shows its pixels instead of a blur.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from srprior.method.ssm import Extraction

DISPLAY_PX = 300  # a panel's image side on screen: small crops are zoomed up to about this
DPI = 100
POI_COLOR = "#ff2020"
SSR_COLORS = ("#00e5ff", "#ffb000", "#ff4fd8", "#7dff3a", "#ffffff")  # readable on photos and on viridis
HALO = [patheffects.withStroke(linewidth=3.2, foreground="black")]  # dark halo: visible on any background


def canvas(width_px: float, height_px: float) -> Figure:
    """An Agg figure of about that size in pixels, laid out by constrained layout."""
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def lambda_text(value: float) -> str:
    """λ_AP as the tables print it: 1e-4, 5e-3, 0."""
    return "0" if value == 0 else np.format_float_scientific(value, trim="-", exp_digits=1)


def save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=DPI)
    return out


def zoom(side: int) -> int:
    """Integer display zoom that brings an image side up to about DISPLAY_PX (1 for large images)."""
    return max(1, DISPLAY_PX // max(1, side))


def box(ax, y0: float, x0: float, size: float, color: str, label: str | None = None) -> Rectangle:
    """Square outline with a dark halo, top-left (y0, x0) in pixel edges."""
    rect = Rectangle((x0, y0), size, size, fill=False, edgecolor=color, linewidth=1.8, label=label)
    rect.set_path_effects(HALO)
    ax.add_patch(rect)
    return rect


def bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------- SR strip
def sr_comparison(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int, path: str | Path,
                  shave: int | None = None, title: str | None = None) -> Path:
    """PNG of bicubic | SR (ours) | HR of one crop, each titled with its Y-PSNR / SSIM against HR (`shave`
    border pixels, None = scale, as in the tables), all at the same nearest-neighbour zoom."""
    from srprior.evaluate import bicubic_upscale
    from srprior.metrics import psnr, ssim

    if sr.shape != hr.shape or hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
        raise ValueError(f"sr_comparison: LR {lr.shape}, SR {sr.shape} and HR {hr.shape} are not one ×{scale} crop")
    bicubic = bicubic_upscale(lr, scale)
    h, w = hr.shape[:2]
    k = zoom(max(h, w))
    fig = canvas(3 * w * k + 60, h * k + (110 if title else 80))
    panels = (("Bicubic", bicubic), ("SR (ours)", sr), ("HR (ground truth)", None))
    for ax, (name, image) in zip(fig.subplots(1, 3), panels):
        ax.imshow(hr if image is None else image, interpolation="nearest")
        scores = "" if image is None else f"\n{psnr(image, hr, scale, shave):.2f} dB · SSIM {ssim(image, hr, scale, shave):.4f}"
        ax.set_title(f"{name}{scores}", fontsize=10)
        bare(ax)
    zoomed = f", shown at {k}×" if k > 1 else ""
    note = f"Y-PSNR / SSIM vs HR, {scale if shave is None else shave} px border shaved · {w}×{h} px{zoomed}"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    return save(fig, path)


# ---------------------------------------------------------------------------------------------- extractor
def _as_image(lr_image, index: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from a uint8 (H,W,3) array or a (3,H,W)/(B,3,H,W) tensor."""
    if torch.is_tensor(lr_image):
        t = lr_image.detach().float().cpu()
        t = t[index] if t.dim() == 4 else t
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"ssm_figure(lr_image=...): expected (B,3,H,W) or (3,H,W), got {tuple(lr_image.shape)}")
        return t.clamp(0, 1).permute(1, 2, 0).numpy()
    arr = np.asarray(lr_image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"ssm_figure(lr_image=...): expected an (H,W,3) image, got shape {arr.shape}")
    return arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else np.clip(arr, 0, 1)


def ssm_figure(lr_image, extraction: Extraction, index: int, path: str | Path, title: str | None = None) -> Path:
    """PNG of sample ``index`` like thesis Fig. 3.2: the LR input and the candidate SSM (with a colourbar), both
    with the PoI (red) and each SSR (its own colour) outlined, and a legend giving each SSR's similarity."""
    if not 0 <= index < extraction.valid.shape[0]:
        raise IndexError(f"ssm_figure(index={index}): batch has {extraction.valid.shape[0]} samples")
    img = _as_image(lr_image, index)
    ssm = extraction.candidate[index, 0].detach().float().cpu().numpy()
    if img.shape[:2] != ssm.shape:
        raise ValueError(f"ssm_figure: image {img.shape[:2]} and extraction maps {ssm.shape} differ in size")
    size = round(float(extraction.poi_mask[index, 0].sum()) ** 0.5)
    squares = [("PoI", extraction.poi_center[index].tolist(), POI_COLOR)]
    squares += [(f"SSR {i + 1}: u = {u:.2f}", c, SSR_COLORS[i % len(SSR_COLORS)])
                for i, (c, u) in enumerate(zip(extraction.ssr_centers[index].tolist(), extraction.sim[index].tolist()))]
    h, w = ssm.shape
    k = zoom(max(h, w))
    fig = canvas(2 * w * k + 170, h * k + 150)
    ax_img, ax_map = fig.subplots(1, 2)
    ax_img.imshow(img, interpolation="nearest")
    heat = ax_map.imshow(ssm, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(heat, ax=ax_map, shrink=0.9, label="similarity u to the PoI")
    for ax in (ax_img, ax_map):
        for name, (y, x), color in squares:
            box(ax, y - size // 2 - 0.5, x - size // 2 - 0.5, size, color, name if ax is ax_img else None)
        bare(ax)
    ax_img.set_title(f"LR input ({w}×{h})", fontsize=10)
    ax_map.set_title("candidate SSM", fontsize=10)
    handles = [Line2D([], [], color=c, linewidth=2.5, path_effects=HALO, label=n) for n, _, c in squares]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles) if len(handles) <= 4 else 3, fontsize=9,
               title=f"{size}×{size} squares on the LR grid", title_fontsize=9, facecolor="#f2f2f2")
    status = ("valid: trains L_AP" if bool(extraction.valid[index])
              else "invalid (flat PoI or an SSR below min_sim): no L_AP")
    fig.suptitle(f"{title} · {status}" if title else status, fontsize=10)
    return save(fig, path)
