"""Attribution analyses of thesis §4.5: PSNR on PoI/SSR regions (Table 4.7) and attribution-norm sections (Fig. 4.5).

Masks, centres and attribution maps live in LR coordinates (the extractor works on the LR input); a region's
pixels in the SR output are its LR pixels repeated `scale` x `scale` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srprior.metrics import rgb_to_y
from srprior.method.ssm import Extraction, ExtractorConfig, extract

# Table 4.7: the five best SSRs anywhere in the image for a 17x17 PoI (the template is the PoI). NMS over
# 2 * 17 - 1 = 33 px keeps the five 17x17 SSRs from overlapping each other (the training NMS of 5 px does not).
TABLE_4_7 = ExtractorConfig(n_ssr=5, select_n=5, scenario="arbitrary", patch=17, poi_size=17, nms_size=33)

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open, clipped to the map


def _mask_2d(mask) -> np.ndarray:
    m = np.asarray(mask)
    while m.ndim > 2 and m.shape[0] == 1:  # (1,1,H,W) masks straight from the extractor
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H,W) (leading singleton axes allowed), got shape {np.shape(mask)}")
    return m.astype(bool)


def upscale_mask(mask, scale: int) -> np.ndarray:
    """LR mask (h,w) -> SR mask (h*scale, w*scale): each LR pixel covers a scale x scale SR block."""
    m = _mask_2d(mask)
    return np.repeat(np.repeat(m, scale, axis=0), scale, axis=1)


def region_psnr(sr: np.ndarray, hr: np.ndarray, mask, scale: int = 1) -> float:
    """PSNR (dB) on Y over the pixels of `mask`, given in LR coordinates of an x`scale` model (scale=1: SR coords).

    No border shave: the region is the selection. Empty masks are an error, identical pixels give +inf.
    """
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"sr and hr must have the same shape, got {np.shape(sr)} vs {np.shape(hr)}")
    m = upscale_mask(mask, scale)
    if m.shape != np.shape(sr)[:2]:
        raise ValueError(f"mask {np.shape(mask)} x scale {scale} = {m.shape} does not match the SR image "
                         f"{np.shape(sr)[:2]}; pass LR-coordinate masks with the model's scale")
    if not m.any():
        raise ValueError("region_psnr got an empty mask")
    diff = rgb_to_y(sr)[m] - rgb_to_y(hr)[m]
    mse = np.mean(diff**2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def region_scores(sr: np.ndarray, hr: np.ndarray, poi_mask, ssr_masks, scale: int) -> dict[str, float]:
    """Table 4.7 for one image: PSNR on the union of the SSRs (LR masks (n_ssr,h,w) or (h,w)), on the PoI, and
    their mean as "Total" -- every row of Table 4.7 satisfies Total = (SSR + PoI) / 2 to 4 decimals."""
    ssr = np.asarray(ssr_masks).astype(bool)
    ssr_union = ssr.reshape(-1, *ssr.shape[-2:]).any(axis=0)
    out = {"psnr_ssr": region_psnr(sr, hr, ssr_union, scale), "psnr_poi": region_psnr(sr, hr, poi_mask, scale)}
    return {"psnr_total": (out["psnr_ssr"] + out["psnr_poi"]) / 2, **out}


@dataclass
class RegionEvaluation:
    """Table 4.7 over a set: `metrics` = psnr_total, psnr_ssr, psnr_poi (means over all images), n_valid,
    n_images; `example` = (lr, sr, extraction) of the first image, for figures."""

    metrics: dict[str, float]
    example: tuple[np.ndarray, np.ndarray, Extraction]


def region_evaluation(model, pairs, scale: int, cfg: ExtractorConfig = TABLE_4_7, device="cpu") -> RegionEvaluation:
    """Table 4.7 (§4.5.5): per image, the extractor on the LR input, the model's uint8 SR output, `region_scores`.

    Every image counts, as in §4.5.5 ("for each sample a candidate SSM", "5 SSRs per test sample"): an image
    whose extraction is not `valid` (flat PoI, or an SSR with NCC < min_sim) still has a PoI and five SSRs and is
    scored; `n_valid` says how many were valid. Trainers (final_metrics) and analyses call this one function."""
    import torch

    from srprior.evaluate import super_resolve, to_tensor

    if not pairs:
        raise ValueError("region_evaluation needs at least one image")
    was_training = model.training
    model.eval()
    rows, n_valid, example = [], 0, None
    try:
        for pair in pairs:
            ex = extract(to_tensor(pair.lr, device), cfg, generator=torch.Generator(device).manual_seed(0))
            sr = super_resolve(model, pair.lr, device)
            rows.append(region_scores(sr, pair.hr, ex.poi_mask[0, 0].cpu().numpy(), ex.ssr_masks[0].cpu().numpy(),
                                      scale))
            n_valid += int(ex.valid[0])
            if example is None:
                example = (pair.lr, sr, ex)
    finally:
        model.train(was_training)
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return RegionEvaluation({**means, "n_valid": float(n_valid), "n_images": float(len(rows))}, example)


def _box(center: tuple[int, int], size: int, shape: tuple[int, int]) -> Box:
    cy, cx = center
    h0, h1 = size // 2, size - size // 2  # odd sizes are centred exactly
    return max(cy - h0, 0), min(cy + h1, shape[0]), max(cx - h0, 0), min(cx + h1, shape[1])


def poi_window(poi_center: tuple[int, int], poi_size: int, scale: int) -> tuple[int, int, int]:
    """LAM window (y, x, size) in SR pixels covering the LR PoI square centred on `poi_center`."""
    cy, cx = (int(v) for v in poi_center)
    r = poi_size // 2
    return (cy - r) * scale, (cx - r) * scale, poi_size * scale


def section_boxes(shape: tuple[int, int], poi_center: tuple[int, int], poi_size: int = 13, n_sections: int = 5,
                  step: int = 20) -> list[Box]:
    """[PoI box, section 1, ..., section n]: squares centred on the PoI, each `step` px wider/taller (Fig. 4.5)."""
    if poi_size < 1 or n_sections < 1 or step < 1:
        raise ValueError(f"poi_size, n_sections and step must be >= 1, got {poi_size}, {n_sections}, {step}")
    if not (0 <= poi_center[0] < shape[0] and 0 <= poi_center[1] < shape[1]):
        raise ValueError(f"poi_center {poi_center} lies outside the map {shape}")
    return [_box(poi_center, poi_size + k * step, shape[:2]) for k in range(n_sections + 1)]


def _l1(attr: np.ndarray, box: Box, keep: np.ndarray | None = None) -> float:
    y0, y1, x0, x1 = box
    region = attr[y0:y1, x0:x1]
    return float(region.sum() if keep is None else region[keep[y0:y1, x0:x1]].sum())


def _abs_map(attr) -> np.ndarray:
    a = np.abs(np.asarray(attr, dtype=np.float64))
    a = a.sum(axis=0) if a.ndim == 3 else a
    if a.ndim != 2:
        raise ValueError(f"attribution map must be (H,W) or (C,H,W), got shape {np.shape(attr)}")
    return a


def norm_sections(attr, poi_center: tuple[int, int], poi_size: int = 13, n_sections: int = 5,
                  step: int = 20) -> np.ndarray:
    """l1 norm of |attr| inside each growing section, divided by the PoI's l1 norm: (n_sections,), each >= 1."""
    a = _abs_map(attr)
    boxes = section_boxes(a.shape, poi_center, poi_size, n_sections, step)
    poi = _l1(a, boxes[0])
    if poi == 0:
        raise ValueError("the attribution norm inside the PoI is 0; nothing to normalise by")
    return np.array([_l1(a, b) / poi for b in boxes[1:]])


def similar_dissimilar_ratio(attr, ssm, threshold: float, sections: list[Box],
                             exclude: Box | None = None) -> np.ndarray:
    """Per section: l1 of |attr| on similar pixels (ssm >= threshold) / l1 on dissimilar ones (Fig. 4.5, right).

    `exclude` (e.g. the PoI box, `section_boxes(...)[0]`) drops pixels from both sums, so the ratio is not
    dominated by the PoI matching itself. No dissimilar attribution gives +inf (nan if neither has any).
    """
    a = _abs_map(attr)
    s = np.asarray(ssm, dtype=np.float64)
    if s.shape != a.shape:
        raise ValueError(f"ssm {s.shape} must have the attribution map's shape {a.shape}")
    keep = np.ones(a.shape, bool)
    if exclude is not None:
        y0, y1, x0, x1 = exclude
        keep[y0:y1, x0:x1] = False
    similar = s >= threshold
    out = []
    for box in sections:
        sim, dis = _l1(a, box, keep & similar), _l1(a, box, keep & ~similar)
        out.append(sim / dis if dis > 0 else (np.inf if sim > 0 else np.nan))
    return np.array(out)
