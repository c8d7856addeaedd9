"""Benchmark evaluation: model -> uint8 SR -> Y-channel PSNR/SSIM (srprior.metrics); the bicubic table of
`srprior eval bicubic` (srprior.commands.eval).

SR outputs are quantised like the literature before scoring (clamp to [0,1], *255, round to uint8), so numbers
are comparable with published tables. `shave` border pixels are cropped before scoring: None = the scale (the
SR literature's Python/MATLAB scripts); the thesis's §4.3 says 6 + scale (pass it explicitly). Heavy imports (torch, datasets) stay inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from srprior.metrics import psnr, ssim

BENCHMARK_FOLDERS = ("Set5", "Set14", "BSD100", "Urban100")


def quantise(sr) -> np.ndarray:
    """Model output (1,3,H,W) or (3,H,W) float tensor in [0,1] -> uint8 (H,W,3): clamp, *255, round."""
    import torch

    t = sr.detach()
    t = t[0] if t.ndim == 4 else t
    return t.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def to_tensor(lr: np.ndarray, device="cpu"):
    """uint8 (h,w,3) image -> float (1,3,h,w) tensor in [0,1] on `device`: the models' input convention."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(lr)).to(device).permute(2, 0, 1)[None].float().div(255)


def super_resolve(model, lr: np.ndarray, device="cpu") -> np.ndarray:
    """One uint8 (h,w,3) LR image through `model` (already in eval mode, on `device`) -> uint8 SR image."""
    import torch

    with torch.no_grad():
        return quantise(model(to_tensor(lr, device)))


def score(sr_images: Iterable[np.ndarray], pairs: Sequence, scale: int, shave: int | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of uint8 SR images against the pairs' HR images (`shave`: None = scale)."""
    psnrs, ssims = [], []
    for sr, pair in zip(sr_images, pairs, strict=True):
        if pair.scale != scale:
            raise ValueError(f"image {pair.name!r} is a x{pair.scale} pair, evaluated at x{scale}")
        if sr.shape != pair.hr.shape:
            raise ValueError(f"image {pair.name!r}: SR output {sr.shape} does not match HR {pair.hr.shape}; "
                             f"is the model built for x{scale}?")
        psnrs.append(psnr(sr, pair.hr, scale, shave))
        ssims.append(ssim(sr, pair.hr, scale, shave))
    if not psnrs:
        raise ValueError("no images to evaluate")
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


def evaluate(model, pairs: Sequence, scale: int, device="cpu", shave: int | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM (Y, `shave` border pixels, None = scale) of `model` over `pairs`, one image per forward."""
    was_training = model.training
    model.eval()
    try:
        return score((super_resolve(model, p.lr, device) for p in pairs), pairs, scale, shave)
    finally:
        model.train(was_training)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-bicubic x`scale` upscaling of a uint8 image: the no-learning baseline."""
    from srprior.data.imresize import imresize

    return imresize(lr, scale)


def bicubic_baseline(pairs: Sequence, scale: int, progress: Callable[[Iterable], Iterable] = iter,
                     shave: int | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of MATLAB-bicubic upscaling over `pairs` (the number every SR table starts from)."""
    return score([bicubic_upscale(p.lr, scale) for p in progress(pairs)], pairs, scale, shave)


def bicubic_table(root: str, scales: Sequence[int], datasets: Sequence[str] = BENCHMARK_FOLDERS,
                  progress: Callable[[Iterable, str], Iterable] = lambda it, desc: it, extra_shave: int = 0) -> dict:
    """{(dataset, scale): {"psnr", "ssim", "n"}} of bicubic upscaling on the EDSR-layout benchmarks under root,
    shaving `extra_shave` + scale border pixels (6 for the thesis's §4.3)."""
    from srprior.data.datasets import benchmark

    results = {}
    for scale in scales:
        for name in datasets:
            pairs = benchmark(root, name, scale)
            res = bicubic_baseline(pairs, scale, progress=lambda it, d=f"{name} x{scale}": progress(it, d),
                                   shave=extra_shave + scale)
            results[(name, scale)] = {**res, "n": len(pairs)}
    return results


def markdown_table(results: dict, scales: Sequence[int], datasets: Sequence[str]) -> str:
    """Rows = scales, columns = datasets, cells "PSNR / SSIM" (thesis layout)."""
    head = "| Method | Scale | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) + " |"
    rule = "|---|---|" + "---|" * len(datasets)
    rows = [f"| Bicubic | x{s} | " + " | ".join(
        f"{results[(d, s)]['psnr']:.2f} / {results[(d, s)]['ssim']:.4f}" for d in datasets) + " |" for s in scales]
    return "\n".join([head, rule, *rows])
