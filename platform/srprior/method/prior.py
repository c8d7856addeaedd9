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

from dataclasses import dataclass

import torch
from torch import nn

from srprior.method.ssm import Extraction, ExtractorConfig, extract
from srprior.schema_fields import Validated, build, is_number, number, option, to_float

_EPS = 1e-12  # n_PoI + n_i below this counts as "no attribution": s := 0 with zero gradient


def _parse_w(w):
    """'sim' (any case) or a number; the check below rejects the rest."""
    if isinstance(w, str) and w.strip().lower() == "sim":
        return "sim"
    return to_float(w)


def _check_w(w) -> str | None:
    if w == "sim" or (is_number(w) and 0.0 < w <= 1.0):
        return None
    return "use 'sim' (SSM similarity targets, Eq. 3.8) or a number in (0, 1] (a constant target ratio)"


def _is_extractor(value) -> str | None:
    return None if isinstance(value, ExtractorConfig) else "must be an ExtractorConfig"


@dataclass(frozen=True)
class PriorConfig(Validated):
    """L_AP weight and targets, with the extractor that finds PoI and SSRs nested (each field declared once)."""

    lambda_ap: float = option(0.0, number(0.0), parse=to_float, thesis="λ_AP", help="weight of L_AP (Eq. 3.9)")
    w: str | float = option("sim", _check_w, parse=_parse_w, thesis="w", help="'sim' or a constant in (0, 1]")
    extractor: ExtractorConfig = option(default_factory=ExtractorConfig, check=_is_extractor,
                                        help="SSM extractor (§3.3)")


def prior_config(**flat) -> PriorConfig:
    """PriorConfig from flat field names (`prior_config(lambda_ap=1e-4, n_ssr=3)`), routed to the extractor."""
    return build(PriorConfig, flat, "prior config")


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
    poi_norm = (a * extraction.poi_mask[:, 0]).sum((1, 2))  # (B,) n_PoI
    ssr_norms = (a.unsqueeze(1) * extraction.ssr_masks).sum((2, 3))  # (B, K) n_i
    den = poi_norm.unsqueeze(1) + ssr_norms
    ok = den > _EPS
    s = torch.where(ok, ssr_norms / torch.where(ok, den, 1.0), 0.0)  # double where: no NaN gradient at 0/0
    w = extraction.sim.to(s.dtype) if cfg.w == "sim" else torch.full_like(s, cfg.w)
    v = extraction.valid.to(s.dtype)
    n_valid = v.sum()
    l_ap = (((s - w) ** 2).mean(1) * v).sum() / n_valid.clamp_min(1.0)
    info = {"n_valid": n_valid.detach(), "s": s.detach(), "w": w.detach(),
            "poi_norm": poi_norm.detach(), "ssr_norms": ssr_norms.detach()}
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

    Returns ``(l_ap, info)``; ``info`` holds detached tensors: n_valid, s, w, poi_norm, ssr_norms, attribution."""
    if extraction is None:
        extraction = extract(lr, cfg.extractor, generator)
    x = lr.detach().requires_grad_(True)
    attr = attribution(model(x), x, extraction, scale, create_graph)
    l_ap, info = prior_loss(attr, extraction, cfg)
    info["attribution"] = attr.detach()
    return l_ap, info
