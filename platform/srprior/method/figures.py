"""Extractor figure in the style of thesis Fig. 3.2: LR crop with PoI/SSR outlines next to the candidate SSM.

Uses matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so it is safe in notebooks
and headless workers alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from srprior.method.ssm import Extraction


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


def _outline(ax, center, size: int, color: str) -> None:
    y, x = (int(v) for v in center)
    r = size // 2
    ax.add_patch(Rectangle((x - r - 0.5, y - r - 0.5), size, size, fill=False, edgecolor=color, linewidth=1.5))


def ssm_figure(lr_image, extraction: Extraction, index: int, path: str | Path) -> Path:
    """Write a PNG of sample ``index``: LR with PoI (red) and SSR (black, cyan inner line) outlines, and the
    candidate SSM heat map with the same outlines. Returns the path."""
    if not 0 <= index < extraction.valid.shape[0]:
        raise IndexError(f"ssm_figure(index={index}): batch has {extraction.valid.shape[0]} samples")
    img = _as_image(lr_image, index)
    ssm = extraction.candidate[index, 0].detach().float().cpu().numpy()
    if img.shape[:2] != ssm.shape:
        raise ValueError(f"ssm_figure: image {img.shape[:2]} and extraction maps {ssm.shape} differ in size")
    size = int(extraction.poi_mask[index, 0].sum().item() ** 0.5)
    poi = extraction.poi_center[index].tolist()
    ssrs = extraction.ssr_centers[index].tolist()
    sims = extraction.sim[index].tolist()
    fig = Figure(figsize=(8.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax_img, ax_map = fig.subplots(1, 2)
    ax_img.imshow(img, interpolation="nearest")
    heat = ax_map.imshow(ssm, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(heat, ax=ax_map, fraction=0.046, pad=0.04, label="similarity u")
    for ax in (ax_img, ax_map):
        _outline(ax, poi, size, "red")
        for c in ssrs:
            _outline(ax, c, size, "black")
            _outline(ax, c, size - 2, "cyan") if size > 2 else None
        ax.set_xticks([])
        ax.set_yticks([])
    status = "valid" if bool(extraction.valid[index]) else "invalid"
    ax_img.set_title(f"LR: PoI (red), {len(ssrs)} SSR(s) (black) - {status}")
    ax_map.set_title("candidate SSM, sim: " + ", ".join(f"{s:.2f}" for s in sims))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
