"""Non-local attribution prior L_AP (thesis §3.4, Eq. 3.2-3.10).

Attribution A = d(sum of the SR output over the PoI)/d(LR input): one extra backward pass (Eq. 3.2), taken with
``create_graph=True`` so that L_AP trains the parameters through a double backward. ``n_PoI``/``n_i`` are l1 norms
of the masked attribution summed over RGB (Eq. 3.3-3.5), ``s_i = n_i / (n_PoI + n_i)`` (Eq. 3.7), targets w are a
constant or the SSM similarity at the SSR (Eq. 3.8), and L_AP is the squared error averaged over SSRs and *valid*
samples (Eq. 3.6, 3.10). Invalid samples, zero attributions and all-invalid batches contribute exactly 0 (never
NaN/Inf). No host syncs: everything stays a tensor.

The batch is attributed in one backward pass of the summed PoI outputs; this equals per-sample attribution for
models without cross-sample coupling (true for all presets except ``edsr-t-bn`` in train mode, whose BatchNorm
couples samples -- the thesis setting has the same property).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from srprior.method.ssm import Extraction, ExtractorConfig, extract

_EPS = 1e-12  # n_PoI + n_i below this counts as "no attribution": s := 0 with zero gradient


@dataclass(frozen=True)
class PriorConfig:
    """L_AP weight, targets and the extractor settings (flat, so trial configs map 1:1 onto fields)."""

    lambda_ap: float = 0.0
    w: str | float = "sim"
    n_ssr: int = 1
    scenario: str | int = "local"
    poi_size: int = 5
    patch: int = 5
    local_window: int = 7
    suppress_window: int = 11
    nms_size: int = 5
    min_sim: float = 0.5
    min_std: float = 0.02
    extractor: ExtractorConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        lam = self.lambda_ap
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam < 0:
            raise ValueError(f"PriorConfig.lambda_ap={lam!r}: must be a finite number >= 0 (thesis: 1e-4)")
        object.__setattr__(self, "lambda_ap", float(lam))
        object.__setattr__(self, "w", _parse_w(self.w))
        ext = ExtractorConfig(
            n_ssr=self.n_ssr, scenario=self.scenario, patch=self.patch, poi_size=self.poi_size,
            local_window=self.local_window, suppress_window=self.suppress_window, nms_size=self.nms_size,
            min_sim=self.min_sim, min_std=self.min_std,
        )
        object.__setattr__(self, "scenario", ext.scenario)
        object.__setattr__(self, "extractor", ext)


def _parse_w(w) -> str | float:
    if isinstance(w, str) and w.strip().lower() == "sim":
        return "sim"
    try:
        value = float(w) if not isinstance(w, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 < value <= 1.0:
        raise ValueError(f"PriorConfig.w={w!r}: use 'sim' (SSM similarity targets) or a number in (0, 1]")
    return value


def _wide(t: torch.Tensor) -> torch.Tensor:
    """fp32 for half/bf16 (autocast) tensors; float64 stays float64 (finite-difference checks)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def attribution(
    sr: torch.Tensor, lr: torch.Tensor, extraction: Extraction, scale: int, create_graph: bool = True
) -> torch.Tensor:
    """Input gradient ``(B, 3, H, W)`` of the SR output summed over each valid sample's PoI (Eq. 3.2).

    ``lr`` must be the leaf (``requires_grad``) that produced ``sr``."""
    mask = extraction.poi_mask * extraction.valid.to(extraction.poi_mask.dtype).view(-1, 1, 1, 1)
    mask_sr = mask.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    if mask_sr.shape[-2:] != sr.shape[-2:]:
        raise ValueError(f"SR output {tuple(sr.shape)} is not scale={scale} times the LR PoI mask {tuple(mask.shape)}")
    (grad,) = torch.autograd.grad((_wide(sr) * mask_sr).sum(), lr, create_graph=create_graph)
    return grad


def prior_loss(
    attr: torch.Tensor, extraction: Extraction, cfg: PriorConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_AP from an attribution map (Eq. 3.3-3.8, 3.10); differentiable in ``attr``."""
    a = _wide(attr).abs().sum(1)  # (B, H, W): l1 over RGB
    n_poi = (a * extraction.poi_mask[:, 0]).sum((1, 2))  # (B,)
    n_ssr = (a.unsqueeze(1) * extraction.ssr_masks).sum((2, 3))  # (B, K)
    den = n_poi.unsqueeze(1) + n_ssr
    ok = den > _EPS
    s = torch.where(ok, n_ssr / torch.where(ok, den, 1.0), 0.0)  # double where: no NaN gradient at 0/0
    w = extraction.sim.to(s.dtype) if cfg.w == "sim" else torch.full_like(s, cfg.w)
    v = extraction.valid.to(s.dtype)
    n_valid = v.sum()
    l_ap = (((s - w) ** 2).mean(1) * v).sum() / n_valid.clamp_min(1.0)
    info = {"n_valid": n_valid.detach(), "s": s.detach(), "w": w.detach(),
            "n_poi": n_poi.detach(), "n_ssr": n_ssr.detach()}
    return l_ap, info


def attribution_prior(
    model: nn.Module,
    lr: torch.Tensor,
    extraction: Extraction | None,
    cfg: PriorConfig,
    scale: int,
    create_graph: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_AP of ``model`` on ``lr`` (own forward pass); ``extraction=None`` runs the extractor first.

    Returns ``(l_ap, info)``; ``info`` holds detached tensors: n_valid, s, w, n_poi, n_ssr, attribution."""
    if extraction is None:
        extraction = extract(lr, cfg.extractor, generator)
    x = lr.detach().requires_grad_(True)
    attr = attribution(model(x), x, extraction, scale, create_graph)
    l_ap, info = prior_loss(attr, extraction, cfg)
    info["attribution"] = attr.detach()
    return l_ap, info
