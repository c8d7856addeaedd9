"""Self-similarity extractor (thesis §3.3, Fig. 3.2, scenarios of Fig. 4.4), batched on the model's device.

Pipeline per LR sample: BT.601 luma -> ``N_P`` non-overlapping ``patch``x``patch`` templates on a grid centred
in the crop -> NCC map of every template against the image (Eq. 3.1, same numbers as
``skimage.feature.match_template(pad_input=True)``: zero padding, window centred on the pixel) -> similarity
``u`` in [0, 1] (``similarity``) -> per template: non-maximum suppression (max-pool) of the map restricted to the
scenario's allowed SSR centres -> candidate SSM = template whose ``select_n`` best peaks have the highest mean;
PoI = ``poi_size`` square on that template's centre, SSRs = squares on its ``n_ssr`` best peaks, targets
``sim`` = the candidate SSM at those peaks (w = "Sim", Eq. 3.8).

Readings of the thesis (each a field of ExtractorConfig; why):
* ``select_n`` = 5: §4.4 "for selecting the candidate SSM, we set N_SSR = 5 and follow [§3.3]", for every
  table; training then uses the row's N_SSR best peaks of that candidate. A missing peak (fewer than
  ``select_n`` in the allowed region) counts as similarity 0 in the mean: it adds no similarity.
* ``similarity``: the thesis states u in [0, 1] but not the map from NCC in [-1, 1]. "clamp" = clamp(ncc, 0, 1):
  an uncorrelated region gets target 0 ("should not contribute"), anti-correlated ones too. "affine" =
  (ncc + 1) / 2: uncorrelated (and flat) regions get 0.5. The mapping gives ``ssm`` and the targets ``sim``
  only: selection (NMS, template ranking) and validity run on clamp(ncc) under both, so the same PoI and SSRs
  are trained; ``min_sim`` is a threshold on the SSRs' NCC (under "affine", u >= (min_sim + 1) / 2).
* ``local_geometry`` (Scenarios 1, 3) with Chebyshev distance ``d`` between SSR and PoI centres: "window" is
  §4.5.1's "local neighbourhood of size 7x7 centred around the PoI": 1 <= d <= local_window // 2, so an SSR
  may overlap the PoI but never coincide with it. "ring": SSRs never overlap the PoI (d >= poi_size) and the
  window grows to the smallest one that can hold such an SSR, d <= max(local_window // 2, poi_size): the
  squares touching the PoI (d = 5 with the defaults).
* Other scenarios keep SSRs disjoint from the PoI (d >= poi_size). "global": d > suppress_window // 2 (centres
  in the 11x11 suppression window are removed, as the thesis suppresses SSM values). "arbitrary": any
  disjoint position.
* "random-local"/"random-global" keep the PoI choice and validity of "local"/"global" (same training samples,
  only the SSR placement changes, as in §4.5.3) and draw SSR centres uniformly without replacement from the
  same allowed region; their ``sim`` is the candidate SSM at the drawn centres.
* ``patch`` defaults to ``poi_size`` (5): the template *is* the PoI, so the PoI is exactly the region whose
  recurrences the SSM measures.
* NMS runs on the map masked to the allowed region, so the best allowed position counts as a peak even on the
  window border (the thesis' local search "may select dissimilar regions to satisfy the constraint", §4.5.1).
  Distinct peaks are >= ``nms_size // 2 + 1`` apart unless they tie exactly (exactly periodic synthetic
  images), so the SSRs of one sample that are peaks do not overlap each other when
  ``nms_size >= 2 * poi_size - 1`` (Table 4.7's extractor) and may otherwise.
* ``selection_area``: where the ``select_n`` peaks that rank the templates are searched. "scenario": inside the
  scenario's allowed SSR centres (with Scenario 1's 7x7 window a template has ~2 peaks there, so missing ones
  count 0). "global": §3.3's text read literally, "global maxima of SSMs indicate correlation with given
  template and local maxima represent SSRs ... average similarity value over N_SSR local maxima": the local
  maxima of the whole SSM (NMS over every position whose square fits in the crop, the template's own peak taking
  part in the NMS) except the template's own position. Only the PoI choice changes: the training SSRs are the
  chosen template's best peaks in the scenario's area either way.
* ``valid``: template std >= ``min_std`` (textured PoI) and, under ``invalid_samples`` "drop", all ``n_ssr`` SSRs
  are peaks with NCC >= ``min_sim``; flat or monochrome crops and crops without enough similar recurrences are
  excluded (consumers weight by ``valid``; masks of invalid samples are still filled, for figures).
  "keep" reads §4.5.1, "it is possible that dissimilar regions are selected to satisfy the local constraint
  which results in processing less valuable information with increasing number of SSRs": the thesis explains
  Table 4.4's N_SSR trend by such samples *being trained on*, which only happens if they are kept. So a
  textured PoI is always valid; missing peaks are filled with the best remaining allowed positions (highest
  NCC first), and every SSR's target is its similarity (w = Sim: a dissimilar region asks for a small ratio).

No host syncs (no ``.item()``, no data-dependent shapes): usable inside a captured CUDA graph. Memory is
O(B * N_P * H * W), fine for training crops (48x48: 81 maps) and 128x128 analysis crops.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from srprior.schema_fields import Validated, integer, number, one_of, option, to_float, to_int

SCENARIOS = ("local", "global", "random-local", "random-global", "arbitrary")
LOCAL_GEOMETRIES = ("window", "ring")
SIMILARITIES = ("clamp", "affine")
SELECTION_AREAS = ("scenario", "global")
INVALID_SAMPLES = ("drop", "keep")
_BY_NUMBER = {"1": "local", "2": "global", "3": "random-local", "4": "random-global"}
_LUMA = (0.299, 0.587, 0.114)  # BT.601
_FLAT_STD = 1e-6  # windows/templates with std below this (<< 1/255) are flat: NCC := 0, like skimage's guard


def parse_scenario(value: str | int) -> str:
    """Canonical scenario name for a name or Fig. 4.4 number (1-4, also as string)."""
    if isinstance(value, bool):
        raise ValueError(f"scenario={value!r}: use one of {SCENARIOS} or 1-4")
    key = str(value).strip().lower()
    key = _BY_NUMBER.get(key, key)
    if key not in SCENARIOS:
        raise ValueError(f"scenario={value!r} is unknown; use one of {SCENARIOS} or the Fig. 4.4 numbers 1-4")
    return key


@dataclass(frozen=True)
class ExtractorConfig(Validated):
    """Extractor hyperparameters (thesis defaults: 5x5 PoI, one SSR, 7x7 local / 11x11 suppression window)."""

    n_ssr: int = option(1, integer(1), parse=to_int, thesis="N_SSR", help="SSRs per PoI used in L_AP (Table 4.4)")
    scenario: str = option("local", one_of(SCENARIOS), parse=parse_scenario, thesis="Scenario (Fig. 4.4)",
                           help="local|global|random-local|random-global|arbitrary, or 1-4")
    select_n: int = option(5, integer(1), parse=to_int, thesis="N_SSR for the candidate SSM (§4.4)",
                           help="peaks whose mean ranks the templates (PoI choice)")
    local_geometry: str = option("window", one_of(LOCAL_GEOMETRIES), thesis="local neighbourhood 7x7 (§4.5.1)",
                                 help="Scenario 1/3 SSR centres: window (1 <= d <= 3, may overlap the PoI) "
                                      "or ring (the squares touching the PoI)")
    similarity: str = option("clamp", one_of(SIMILARITIES), thesis="u in [0, 1] (§3.3)",
                             help="NCC -> similarity u: clamp(ncc, 0, 1) or (ncc + 1) / 2")
    selection_area: str = option("scenario", one_of(SELECTION_AREAS), thesis="candidate SSM (§3.3, §4.4)",
                                 help="where the select_n peaks ranking the templates are searched: scenario "
                                      "(its allowed SSR area) or global (local maxima of the whole SSM)")
    invalid_samples: str = option("drop", one_of(INVALID_SAMPLES), thesis="dissimilar regions (§4.5.1)",
                                  help="drop: samples whose SSRs are not all peaks with NCC >= min_sim leave L_AP; "
                                       "keep: fill with the best allowed positions, target = their similarity")
    patch: int = option(5, integer(3, odd=True), parse=to_int, help="template side (a 1x1 template has no std)")
    poi_size: int = option(5, integer(1, odd=True), parse=to_int, thesis="PoI size", help="PoI and SSR side")
    local_window: int = option(7, integer(3, odd=True), parse=to_int, help="Scenario 1 window of SSR centres")
    suppress_window: int = option(11, integer(1, odd=True), parse=to_int, help="Scenario 2 suppression window")
    nms_size: int = option(5, integer(1, odd=True), parse=to_int, help="non-maximum suppression window")
    min_sim: float = option(0.5, number(0.0, 1.0), parse=to_float, help="least NCC of every SSR of a valid sample")
    min_std: float = option(0.02, number(0.0), parse=to_float, help="least PoI std (grey levels in [0, 1])")


@dataclass
class Extraction:
    """Extractor output for a batch; coordinates are (y, x) LR pixel indices, masks are binary float."""

    ssm: torch.Tensor  # (B, N_P, H, W) similarity maps u of all templates, in [0, 1]
    template: torch.Tensor  # (B,) long, index of the candidate SSM among the N_P templates
    poi_mask: torch.Tensor  # (B, 1, H, W)
    ssr_masks: torch.Tensor  # (B, n_ssr, H, W)
    sim: torch.Tensor  # (B, n_ssr) candidate SSM at the SSR centres (targets for w = "sim")
    valid: torch.Tensor  # (B,) bool
    poi_center: torch.Tensor  # (B, 2) long
    ssr_centers: torch.Tensor  # (B, n_ssr, 2) long

    @property
    def candidate(self) -> torch.Tensor:
        """(B, 1, H, W) the chosen SSM."""
        idx = self.template.view(-1, 1, 1, 1).expand(-1, 1, *self.ssm.shape[-2:])
        return self.ssm.gather(1, idx)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, H, W) BT.601 luma (offset-free; NCC ignores offset and gain)."""
    w = rgb.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (rgb * w).sum(1)


def to_similarity(corr: torch.Tensor, mapping: str) -> torch.Tensor:
    """NCC in [-1, 1] -> similarity u in [0, 1] (``ExtractorConfig.similarity``)."""
    return corr.clamp_min(0.0) if mapping == "clamp" else (corr + 1.0) * 0.5


def template_grid(h: int, w: int, patch: int, poi_size: int) -> tuple[int, int, int, int]:
    """(top, left, rows, cols) of the template grid: non-overlapping tiles centred in the crop, with a margin
    that keeps every PoI square inside the image."""
    margin = max(0, poi_size // 2 - patch // 2)
    rows, cols = (h - 2 * margin) // patch, (w - 2 * margin) // patch
    if rows < 1 or cols < 1:
        raise ValueError(f"LR crop {h}x{w} is too small for {patch}x{patch} templates and a {poi_size}x{poi_size} PoI")
    top = margin + (h - 2 * margin - rows * patch) // 2
    left = margin + (w - 2 * margin - cols * patch) // 2
    return top, left, rows, cols


def ncc(grey: torch.Tensor, patch: int, poi_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """NCC (Eq. 3.1) of every grid template against its image: ``(B, N_P, H, W)`` in [-1, 1] and the template
    centres ``(N_P, 2)``. Same numbers as ``match_template(img, tpl, pad_input=True)``: the window is centred on
    the pixel, zero padded, and flat windows/templates give 0. Computed with unfold + bmm on ``grey``'s device,
    in float64 because near-flat windows (std ~1e-5) amplify float32 rounding to ~1e-3 in NCC."""
    b, h, w = grey.shape
    grey = grey.double()
    tpl, centers = _tiles(grey, patch, poi_size or patch)
    pad = F.pad(grey, (patch // 2,) * 4)  # zero padding, like skimage's pad_input
    # (B, P*P, H*W) windows from P*P shifted slices: much faster than F.unfold's single-channel CPU im2col
    win = torch.stack([pad[:, dy:dy + h, dx:dx + w] for dy in range(patch) for dx in range(patch)], 1).flatten(2)
    tpl, win = _unit(tpl, patch), _unit(win, patch)
    out = torch.bmm(tpl.transpose(1, 2), win).clamp(-1.0, 1.0).float()  # (B, N_P, H*W)
    return out.view(b, -1, h, w), centers


def _unit(cols: torch.Tensor, patch: int) -> torch.Tensor:
    """Centre each column (no E[x^2]-E[x]^2 cancellation) and scale it to unit norm; flat columns -> 0."""
    cols = cols - cols.mean(1, keepdim=True)
    ss = cols.square().sum(1, keepdim=True)
    flat_ss = patch * patch * _FLAT_STD**2
    return torch.where(ss > flat_ss, cols * ss.clamp_min(flat_ss).rsqrt(), 0.0)


def _tiles(grey: torch.Tensor, patch: int, poi_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid templates ``(B, P*P, N_P)`` (row-major tiles) and their centres ``(N_P, 2)``."""
    top, left, rows, cols = template_grid(grey.shape[1], grey.shape[2], patch, poi_size)
    region = grey[:, top:top + rows * patch, left:left + cols * patch]
    tiles = region.reshape(-1, rows, patch, cols, patch).permute(0, 2, 4, 1, 3).reshape(-1, patch * patch, rows * cols)
    return tiles, grid_centers(grey.shape[1], grey.shape[2], patch, poi_size, grey.device)


def grid_centers(h: int, w: int, patch: int, poi_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N_P, 2) long (y, x) centres of the grid templates, row-major."""
    top, left, rows, cols = template_grid(h, w, patch, poi_size)
    ys = top + patch // 2 + patch * torch.arange(rows, device=device)
    xs = left + patch // 2 + patch * torch.arange(cols, device=device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)


@functools.lru_cache(maxsize=32)
def _allowed(h: int, w: int, cfg: ExtractorConfig, device: torch.device) -> torch.Tensor:
    """(N_P, H, W) bool: allowed SSR centres per template under the scenario (see module docstring)."""
    centers = grid_centers(h, w, cfg.patch, cfg.poi_size, device)
    cy, cx = centers[:, 0, None, None], centers[:, 1, None, None]
    yy = torch.arange(h, device=device).view(1, h, 1)
    xx = torch.arange(w, device=device).view(1, 1, w)
    r = cfg.poi_size // 2
    inside = (yy >= r) & (yy < h - r) & (xx >= r) & (xx < w - r)
    d = torch.maximum((yy - cy).abs(), (xx - cx).abs())
    if cfg.scenario in ("local", "random-local") and cfg.local_geometry == "window":
        return inside & (d >= 1) & (d <= cfg.local_window // 2)
    allowed = inside & (d >= cfg.poi_size)  # disjoint from the PoI
    if cfg.scenario in ("local", "random-local"):
        allowed &= d <= max(cfg.local_window // 2, cfg.poi_size)
    elif cfg.scenario in ("global", "random-global"):
        allowed &= d > cfg.suppress_window // 2
    return allowed


def _annulus(cfg: ExtractorConfig) -> tuple[int, float]:
    """(d_min, d_max) of the allowed SSR centres (Chebyshev distance to the PoI centre), as in `_allowed`."""
    if cfg.scenario in ("local", "random-local") and cfg.local_geometry == "window":
        return 1, cfg.local_window // 2
    if cfg.scenario in ("local", "random-local"):
        return cfg.poi_size, max(cfg.local_window // 2, cfg.poi_size)
    if cfg.scenario in ("global", "random-global"):
        return max(cfg.poi_size, cfg.suppress_window // 2 + 1), float("inf")
    return cfg.poi_size, float("inf")


def allowed_counts(h: int, w: int, cfg: ExtractorConfig) -> list[int]:
    """Allowed SSR centres of every template of an h x w crop, in closed form (no maps: a config check must not
    allocate N_P * H * W): each region is an annulus d_min <= d <= d_max cut to the centres whose square fits."""
    top, left, rows, cols = template_grid(h, w, cfg.patch, cfg.poi_size)
    r, (low, high) = cfg.poi_size // 2, _annulus(cfg)

    def span(c: int, k: float, n: int) -> int:  # positions within k of c along an axis of n, square inside
        return 0 if k < 0 else max(0, min(c + int(min(k, n)), n - 1 - r) - max(c - int(min(k, n)), r) + 1)

    def square(cy: int, cx: int, k: float) -> int:
        return span(cy, k, h) * span(cx, k, w)

    ys = [top + cfg.patch // 2 + cfg.patch * i for i in range(rows)]
    xs = [left + cfg.patch // 2 + cfg.patch * j for j in range(cols)]
    return [square(y, x, high) - square(y, x, low - 1) for y in ys for x in xs]


@functools.lru_cache(maxsize=256)
def crop_problem(cfg: ExtractorConfig, side: int) -> str | None:
    """Why `cfg` cannot run on side x side LR training patches (None when it can): the templates must fit, every
    PoI must have n_ssr allowed SSR positions (else its samples are never valid, or the random scenarios place
    SSRs outside the region), and select_n may not exceed the positions any template has."""
    try:
        counts = allowed_counts(side, side, cfg)
    except ValueError as exc:
        return f"ExtractorConfig.patch={cfg.patch}, poi_size={cfg.poi_size}: {exc}; lower them or raise lr_patch"
    where = f"the {cfg.scenario} scenario allows"
    if min(counts) == 0:
        return (f"ExtractorConfig.scenario={cfg.scenario}: some PoI of a {side}x{side} LR patch (lr_patch={side}) "
                "has no allowed SSR position; use a larger lr_patch or smaller local_window/suppress_window")
    if cfg.n_ssr > min(counts):
        return (f"ExtractorConfig.n_ssr={cfg.n_ssr}: {where} at most {min(counts)} SSR positions for some PoI of "
                f"a {side}x{side} LR patch (lr_patch={side}); use n_ssr <= {min(counts)} or a larger lr_patch")
    if cfg.select_n > max(counts):
        return (f"ExtractorConfig.select_n={cfg.select_n}: {where} at most {max(counts)} peaks per template in a "
                f"{side}x{side} LR patch (lr_patch={side}); use select_n <= {max(counts)} or a larger lr_patch")
    return None


@functools.lru_cache(maxsize=32)
def _anywhere(h: int, w: int, patch: int, poi_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """((1, 1, H, W) centres whose square fits in the crop, (1, N_P, H, W) those minus each template's own centre):
    the NMS area and the peak area of ``selection_area`` "global"."""
    centers = grid_centers(h, w, patch, poi_size, device)
    yy = torch.arange(h, device=device).view(1, h, 1)
    xx = torch.arange(w, device=device).view(1, 1, w)
    r = poi_size // 2
    inside = ((yy >= r) & (yy < h - r) & (xx >= r) & (xx < w - r)).unsqueeze(0)
    own = (yy == centers[:, 0, None, None]) & (xx == centers[:, 1, None, None])
    return inside, inside & ~own.unsqueeze(0)


def _peak_scores(corr: torch.Tensor, nms_area: torch.Tensor, area: torch.Tensor, nms_size: int) -> torch.Tensor:
    """(B, N_P, H*W): clamp(ncc) at the local maxima (NMS over ``nms_area``) inside ``area``, -1 at other positions
    of ``area``, -2 outside it. Selection runs on clamp(ncc) under either similarity mapping."""
    b, n_p, h, w = corr.shape
    masked = torch.where(nms_area, corr.clamp_min(0.0), -1.0)
    k, r = nms_size, nms_size // 2  # separable max-pool: 2k instead of k*k compares
    pooled = F.max_pool2d(F.max_pool2d(masked, (1, k), 1, (0, r)), (k, 1), 1, (r, 0))
    return torch.where((masked == pooled) & area, masked, -1.0).masked_fill(~area, -2.0).view(b, n_p, h * w)


def square_masks(centers: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """(..., 2) long centres -> (..., H, W) float masks of ``size`` x ``size`` squares."""
    yy = torch.arange(h, device=centers.device).view(h, 1)
    xx = torch.arange(w, device=centers.device).view(1, w)
    cy, cx = centers[..., 0, None, None], centers[..., 1, None, None]
    r = size // 2
    return (((yy - cy).abs() <= r) & ((xx - cx).abs() <= r)).float()


def _choose(corr: torch.Tensor, top_val: torch.Tensor, textured: torch.Tensor, cfg: ExtractorConfig) -> torch.Tensor:
    """(B,) the candidate SSM: the textured template whose ``select_n`` best peaks (in ``selection_area``) have
    the highest mean similarity; a missing peak counts 0."""
    if cfg.selection_area == "global":
        b, _, h, w = corr.shape
        nms_area, area = _anywhere(h, w, cfg.patch, cfg.poi_size, corr.device)
        top_val = _peak_scores(corr, nms_area, area, cfg.nms_size).topk(cfg.select_n, dim=-1).values
    rank = torch.where(textured, top_val[..., :cfg.select_n].clamp_min(0.0).mean(-1), -1.0)
    return rank.argmax(1)


@torch.no_grad()
def extract(lr: torch.Tensor, cfg: ExtractorConfig, generator: torch.Generator | None = None) -> Extraction:
    """Candidate SSM, PoI/SSR masks, targets and validity for a batch of LR crops ``(B, 3, H, W)``.

    ``generator`` (on ``lr``'s device) drives the random scenarios; the others are deterministic."""
    if not isinstance(lr, torch.Tensor) or lr.dim() != 4 or lr.shape[1] != 3 or not lr.is_floating_point():
        got = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise ValueError(f"extract(lr=...): expected a float (B, 3, H, W) RGB tensor, got {got}")
    b, _, h, w = lr.shape
    grey = luma(lr.detach().float())
    corr, centers = ncc(grey, cfg.patch, cfg.poi_size)
    sim_maps = to_similarity(corr, cfg.similarity)
    n_p = sim_maps.shape[1]
    allowed = _allowed(h, w, cfg, lr.device).unsqueeze(0)  # (1, N_P, H, W)
    # peaks rank by similarity, then other allowed positions (-1), never disallowed ones (-2): SSRs always
    # satisfy the geometry when the region has n_ssr positions; a missing peak reads -1 and makes it invalid
    score = _peak_scores(corr, allowed, allowed, cfg.nms_size)
    n_top = max(cfg.select_n, cfg.n_ssr)
    top_val, top_idx = score.topk(n_top, dim=-1)  # (B, N_P, n_top), best first
    tpl_std = _tiles(grey, cfg.patch, cfg.poi_size)[0].std(1, unbiased=False)  # (B, N_P)
    textured = tpl_std >= cfg.min_std
    chosen = _choose(corr, top_val, textured, cfg)  # (B,)
    pick = chosen.view(b, 1, 1).expand(-1, 1, n_top)
    peak_val = top_val.gather(1, pick).squeeze(1)[:, :cfg.n_ssr]  # (B, n_ssr)
    ssr_idx = top_idx.gather(1, pick).squeeze(1)[:, :cfg.n_ssr]
    valid = textured.gather(1, chosen[:, None]).squeeze(1)
    if cfg.invalid_samples == "keep":  # missing peaks: the best other allowed positions, by NCC (see above)
        rows = chosen.view(b, 1, 1).expand(-1, 1, h * w)
        own = score.gather(1, rows).squeeze(1)  # (B, H*W): peaks >= 0, other allowed -1, disallowed -2
        ncc_own = corr.clamp_min(0.0).view(b, n_p, h * w).gather(1, rows).squeeze(1)
        fill = torch.where(own == -1.0, ncc_own - 2.0, own).masked_fill(own == -2.0, -3.0)  # peaks, then by NCC
        ssr_idx = torch.where(peak_val >= 0.0, ssr_idx, fill.topk(cfg.n_ssr, dim=-1).indices)  # peaks come first
    else:
        valid = valid & (peak_val >= cfg.min_sim).all(-1)
    candidate = sim_maps.gather(1, chosen.view(b, 1, 1, 1).expand(-1, 1, h, w)).view(b, h * w)
    if cfg.scenario.startswith("random"):
        u = torch.rand(b, h * w, generator=generator, device=lr.device)
        ok = allowed[0].view(n_p, h * w)[chosen]
        ssr_idx = torch.where(ok, u, -1.0).topk(cfg.n_ssr, dim=-1).indices
    sim = candidate.gather(1, ssr_idx)
    poi_center = centers[chosen]
    ssr_centers = torch.stack((ssr_idx // w, ssr_idx % w), -1)
    return Extraction(
        ssm=sim_maps,
        template=chosen,
        poi_mask=square_masks(poi_center, cfg.poi_size, h, w).unsqueeze(1),
        ssr_masks=square_masks(ssr_centers, cfg.poi_size, h, w),
        sim=sim,
        valid=valid,
        poi_center=poi_center,
        ssr_centers=ssr_centers,
    )

