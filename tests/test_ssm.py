"""Self-similarity extractor: NCC against scikit-image, scenario geometry on 1000 draws, validity, figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.feature import match_template

from srprior.data.datasets import PatchSampler, benchmark
from srprior.method import ssm
from srprior.method.analysis import TABLE_4_7
from srprior.method.figures import ssm_figure

LUMA = np.array([0.299, 0.587, 0.114])


def _textures(n: int, size: int, seed: int) -> torch.Tensor:
    """Random periodic tiles (period 3-9) plus noise of random strength, in [0, 1]: mostly self-similar."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, size, size)
    for period in range(3, 10):
        idx = torch.arange(n)[torch.arange(n) % 7 == period - 3]
        tile = torch.rand(len(idx), 3, period, period, generator=g)
        reps = -(-size // period)
        out[idx] = tile.repeat(1, 1, reps, reps)[..., :size, :size]
    noise = torch.rand(n, 1, 1, 1, generator=g) * 0.3 * torch.randn(n, 3, size, size, generator=g)
    return (out + noise).clamp(0, 1)


def _real_crops(data_root, size: int = 48) -> list[np.ndarray]:
    crops = []
    for name, k in (("Set5", 2), ("Urban100", 4)):
        for pair in benchmark(data_root, name, k)[:3]:
            h, w = pair.lr.shape[:2]
            crops.append(pair.lr[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size])
    return crops


def test_ncc_matches_skimage_match_template_on_real_images(data_root):
    crops = _real_crops(data_root)
    lr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    corr, centers = ssm.ncc(ssm.luma(lr), patch=5)
    assert corr.shape == (len(crops), 81, 48, 48)
    worst = 0.0
    for b, crop in enumerate(crops):
        grey = (crop.astype(np.float64) / 255) @ LUMA
        for n, (cy, cx) in enumerate(centers.tolist()):
            ref = match_template(grey, grey[cy - 2:cy + 3, cx - 2:cx + 3], pad_input=True)
            worst = max(worst, float(np.abs(ref - corr[b, n].double().numpy()).max()))
    assert worst < 1e-4
    own = corr[torch.arange(len(crops))[:, None], torch.arange(81), centers[:, 0], centers[:, 1]]
    textured = ssm._tiles(ssm.luma(lr), 5, 5)[0].std(1) > 1e-3
    assert textured.sum() > 400 and torch.all(own[textured] > 0.9999)  # a template matches itself


def _chebyshev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().max(-1).values


GEOMETRY_CASES = [(s, "ring") for s in ssm.SCENARIOS] + [("local", "window"), ("random-local", "window")]


@pytest.mark.parametrize("scenario, geometry", GEOMETRY_CASES)
def test_scenario_geometry_holds_on_1000_draws(scenario, geometry):
    lr = _textures(1000, 24, seed=1)
    cfg = ssm.ExtractorConfig(n_ssr=2, scenario=scenario, local_geometry=geometry)
    ext = ssm.extract(lr, cfg, generator=torch.Generator().manual_seed(0))
    d = _chebyshev(ext.ssr_centers, ext.poi_center[:, None, :])  # (1000, 2)
    overlap = (ext.poi_mask * ext.ssr_masks).sum((2, 3))
    if geometry == "window" and scenario.endswith("local"):  # §4.5.1: centres in the 7x7 window, not on the PoI
        assert torch.all((d >= 1) & (d <= 3)) and torch.all(overlap > 0)
        assert torch.all(overlap == (5 - (ext.ssr_centers - ext.poi_center[:, None]).abs()).prod(-1))
    else:
        assert torch.all(d >= 5) and torch.all(overlap == 0), "an SSR overlaps the PoI"
    if scenario in ("local", "random-local") and geometry == "ring":
        assert torch.all(d <= 5)  # 7x7 window grown to the ring of squares touching the PoI
    elif scenario in ("global", "random-global"):
        assert torch.all(d >= 6)  # centre outside the 11x11 suppression window
    r = 2
    for centers in (ext.poi_center[:, None, :], ext.ssr_centers):
        assert torch.all((centers >= r) & (centers <= 23 - r)), "a mask leaves the image"
    assert torch.all(ext.poi_mask.sum((1, 2, 3)) == 25) and torch.all(ext.ssr_masks.sum((2, 3)) == 25)
    assert torch.all(ext.ssr_masks[torch.arange(1000)[:, None], torch.arange(2), ext.ssr_centers[..., 0],
                                   ext.ssr_centers[..., 1]] == 1)
    assert ext.valid.sum() >= 250  # periodic textures: SSRs at d = 3 (period 3) and d = 5 (period 5) exist
    cand = ext.candidate[:, 0]
    at_ssr = cand[torch.arange(1000)[:, None], ext.ssr_centers[..., 0], ext.ssr_centers[..., 1]]
    torch.testing.assert_close(ext.sim, at_ssr)
    if not scenario.startswith("random"):
        assert torch.all(ext.sim[ext.valid] >= cfg.min_sim)


@pytest.mark.parametrize("scenario", ["global", "random-global", "arbitrary"])
def test_local_geometry_changes_only_the_local_scenarios(scenario):
    lr = _textures(70, 24, seed=7)
    a, b = (ssm.extract(lr, ssm.ExtractorConfig(n_ssr=2, scenario=scenario, local_geometry=g),
                        generator=torch.Generator().manual_seed(1)) for g in ("window", "ring"))
    for name in a.__dataclass_fields__:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("random_name, base", [("random-local", "local"), ("random-global", "global")])
def test_random_scenarios_keep_poi_and_validity_and_cover_the_region(random_name, base):
    lr = _textures(200, 24, seed=2)
    ref = ssm.extract(lr, ssm.ExtractorConfig(scenario=base))
    a = ssm.extract(lr, ssm.ExtractorConfig(scenario=random_name), generator=torch.Generator().manual_seed(5))
    b = ssm.extract(lr, ssm.ExtractorConfig(scenario=random_name), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.poi_center, ref.poi_center) and torch.equal(a.valid, ref.valid)
    assert torch.equal(a.ssr_centers, b.ssr_centers)  # deterministic under a generator
    # uniform over the allowed region: one image redrawn 600 x 4 times hits every allowed centre, nothing else
    one = lr[:1].expand(600, -1, -1, -1)
    cfg = ssm.ExtractorConfig(scenario=random_name, n_ssr=4)
    draws = ssm.extract(one, cfg, generator=torch.Generator().manual_seed(9))
    allowed = ssm._allowed(24, 24, cfg, torch.device("cpu"))[draws.template[0]]
    hits = torch.zeros(24, 24, dtype=torch.long)
    ys, xs = draws.ssr_centers[..., 0].flatten(), draws.ssr_centers[..., 1].flatten()
    hits.index_put_((ys, xs), torch.ones_like(ys), accumulate=True)
    assert torch.equal(hits > 0, allowed)
    assert torch.all(draws.ssr_centers[:, :, None, :].ne(draws.ssr_centers[:, None, :, :]).any(-1).sum((1, 2)) == 12)


def test_default_crop_local_ssr_lies_in_the_7x7_window_and_matches_thesis_defaults():
    cfg = ssm.ExtractorConfig()
    assert (cfg.n_ssr, cfg.scenario, cfg.poi_size, cfg.patch, cfg.local_window, cfg.suppress_window) == (
        1, "local", 5, 5, 7, 11)
    assert (cfg.select_n, cfg.local_geometry, cfg.similarity) == (5, "window", "clamp")
    lr = _textures(16, 48, seed=3)
    ext = ssm.extract(lr, cfg)
    assert ext.ssm.shape == (16, 81, 48, 48) and ext.template.shape == (16,)
    assert ext.poi_mask.shape == (16, 1, 48, 48) and ext.ssr_masks.shape == (16, 1, 48, 48)
    assert ext.sim.shape == (16, 1) and ext.valid.dtype == torch.bool
    d = _chebyshev(ext.ssr_centers[:, 0], ext.poi_center)
    assert torch.all((d >= 1) & (d <= 3))
    assert float(ext.ssm.min()) >= 0 and float(ext.ssm.max()) <= 1


def _planted() -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Noise with one exact copy of grid template 10 (A) and five noisy copies of template 15 (B): A has the
    single best recurrence (NCC 1), B the best five (NCC ~0.93-0.95)."""
    rng = np.random.default_rng(0)
    img = rng.random((48, 48))
    a, b = img[6:11, 6:11].copy(), img[6:11, 31:36].copy()  # grid tiles (1, 1) and (1, 6) of the 9x9 grid
    img[30:35, 8:13] = a
    copies = [(20, 38), (40, 40), (40, 22), (20, 18), (28, 28)]
    for y, x in copies:
        img[y - 2:y + 3, x - 2:x + 3] = b + 0.12 * rng.standard_normal((5, 5))
    return torch.from_numpy(img).float().expand(1, 3, 48, 48).contiguous(), copies


def test_candidate_ssm_ranks_templates_by_their_five_best_peaks():
    """§4.4: the candidate SSM is chosen with N_SSR = 5 peaks (select_n), training uses the row's n_ssr of them."""
    lr, copies = _planted()
    one = ssm.extract(lr, ssm.ExtractorConfig(scenario="arbitrary", select_n=1, n_ssr=3))
    assert one.template.tolist() == [10] and one.ssr_centers[0, 0].tolist() == [32, 10]  # A's exact copy
    for n_ssr in (1, 3, 5):
        ext = ssm.extract(lr, ssm.ExtractorConfig(scenario="arbitrary", n_ssr=n_ssr))  # select_n = 5 (default)
        assert ext.template.tolist() == [15] and ext.poi_center.tolist() == [[8, 33]] and ext.valid.item()
        assert ext.ssr_centers.shape == (1, n_ssr, 2) and ext.sim.shape == (1, n_ssr)
        got = [tuple(c) for c in ext.ssr_centers[0].tolist()]
        assert set(got) <= set(copies) and len(set(got)) == n_ssr
        grey = lr[0, 0].double().numpy()
        ref = match_template(grey, grey[6:11, 31:36], pad_input=True)
        expected = sorted((ref[y, x] for y, x in copies), reverse=True)[:n_ssr]
        np.testing.assert_allclose(ext.sim[0].numpy(), expected, atol=1e-4)  # the n_ssr best of the five


@pytest.fixture(scope="module")
def bsd_crops(data_root) -> torch.Tensor:
    """48 random 48x48 LR training-like crops of BSD100 x2."""
    return PatchSampler(benchmark(data_root, "BSD100", 2)[:12], 2, patch=48, batch=48, seed=0).next()[0]


@pytest.mark.parametrize("scenario", ["local", "random-global", "arbitrary"])
def test_similarity_mapping_changes_only_ssm_and_targets(bsd_crops, scenario):
    lr = bsd_crops
    clamp, affine = (ssm.extract(lr, ssm.ExtractorConfig(scenario=scenario, n_ssr=2, similarity=m),
                                 generator=torch.Generator().manual_seed(3)) for m in ("clamp", "affine"))
    for name in ("template", "poi_mask", "ssr_masks", "valid", "poi_center", "ssr_centers"):
        assert torch.equal(getattr(clamp, name), getattr(affine, name)), name
    corr = ssm.ncc(ssm.luma(lr), 5)[0]
    torch.testing.assert_close(clamp.ssm, corr.clamp_min(0))
    torch.testing.assert_close(affine.ssm, (corr + 1) / 2)
    torch.testing.assert_close(affine.sim, torch.where(clamp.sim > 0, (clamp.sim + 1) / 2, affine.sim))
    assert torch.all(affine.sim[clamp.sim == 0] <= 0.5)
    if not scenario.startswith("random"):  # min_sim = 0.5 is an NCC: u >= (0.5 + 1) / 2
        assert torch.all(affine.sim[affine.valid] >= 0.75) and torch.all(clamp.sim[clamp.valid] >= 0.5)
    if scenario == "random-global":  # uncorrelated regions: target 0 under clamp, ~0.5 under affine
        assert 0.3 < (clamp.sim == 0).float().mean() < 0.7 and 0.45 < affine.sim.mean() < 0.62


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-sync check needs CUDA")
@pytest.mark.parametrize("cfg", [ssm.ExtractorConfig(scenario=s, n_ssr=2) for s in ssm.SCENARIOS]
                         + [ssm.ExtractorConfig(local_geometry="ring", similarity="affine"), TABLE_4_7,
                            ssm.ExtractorConfig(n_ssr=3, selection_area="global", invalid_samples="keep")])
def test_extractor_never_syncs_the_device(cfg):
    lr = _textures(8, 48, seed=5).cuda()
    gen = torch.Generator("cuda").manual_seed(0)
    ssm.extract(lr, cfg, generator=gen)  # warm-up: _allowed's cache
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ssm.extract(lr, cfg, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_flat_monochrome_and_zero_images_are_invalid():
    flat = torch.full((1, 3, 48, 48), 0.37)
    red = torch.zeros(1, 3, 48, 48)
    red[:, 0] = 1.0
    zeros = torch.zeros(1, 3, 48, 48)
    tiny_noise = 0.4 + 0.001 * torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    textured = _textures(7, 48, seed=4)[:1]  # period 3: SSRs at d = 3 (window) and d >= 6 (global)
    lr = torch.cat([flat, red, zeros, tiny_noise, textured])
    for scenario in ssm.SCENARIOS:
        ext = ssm.extract(lr, ssm.ExtractorConfig(scenario=scenario, n_ssr=3))
        assert ext.valid.tolist() == [False, False, False, False, True], scenario
        assert torch.isfinite(ext.ssm).all() and torch.isfinite(ext.sim).all()


def test_config_validation_and_scenario_numbers():
    assert [ssm.parse_scenario(v) for v in (1, "2", 3, "4", "Arbitrary")] == [
        "local", "global", "random-local", "random-global", "arbitrary"]
    assert ssm.ExtractorConfig(scenario=2).scenario == "global"
    for bad in ({"n_ssr": 0}, {"poi_size": 4}, {"patch": 1}, {"local_window": 6}, {"local_window": 1},
                {"scenario": 5}, {"scenario": "near"}, {"min_sim": 1.5}, {"n_ssr": 1.0}, {"select_n": 0},
                {"local_geometry": "square"}, {"similarity": "sigmoid"}):
        with pytest.raises(ValueError, match=next(iter(bad)) if "scenario" not in bad else "scenario"):
            ssm.ExtractorConfig(**bad)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        ssm.extract(torch.rand(3, 48, 48), ssm.ExtractorConfig())
    with pytest.raises(ValueError, match="too small"):
        ssm.extract(torch.rand(1, 3, 4, 4), ssm.ExtractorConfig())


def test_ssm_figure_writes_png_with_outlines(tmp_path):
    lr = _textures(2, 48, seed=6)
    ext = ssm.extract(lr, ssm.ExtractorConfig(n_ssr=2))
    path = ssm_figure(lr, ext, 1, tmp_path / "fig" / "ssm.png")
    assert path == tmp_path / "fig" / "ssm.png"
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[1] >= 2 * 48 * 3 and img.shape[0] >= 48 * 3  # two panels, LR pixels shown at >= 3x
    red = (img[..., 0] > 0.9) & (img[..., 1] < 0.1) & (img[..., 2] < 0.1)
    assert red.sum() > 50  # the PoI outline is drawn


def test_allowed_counts_match_the_extractors_maps():
    """The closed-form count the config check uses agrees with the boolean maps `extract` uses, per template, over
    every scenario, geometry and a spread of crop, PoI, template and window sizes."""
    import itertools

    from srprior.method.ssm import ExtractorConfig, _allowed, allowed_counts

    checked = 0
    for scenario, geometry, side, poi, patch, local, suppress in itertools.product(
            ("local", "global", "random-local", "random-global", "arbitrary"), ("window", "ring"), (8, 13, 24),
            (1, 5), (3, 5), (3, 9), (1, 11)):
        cfg = ExtractorConfig(scenario=scenario, local_geometry=geometry, poi_size=poi, patch=patch,
                              local_window=local, suppress_window=suppress)
        maps = _allowed(side, side, cfg, torch.device("cpu"))
        assert allowed_counts(side, side, cfg) == maps.flatten(1).sum(1).tolist(), (cfg, side)
        checked += 1
    assert checked == 480


@pytest.fixture(scope="module")
def embedded_crops() -> torch.Tensor:
    """48 real 48x48 LR training crops (x2) of the embedded default (scikit-image's images; no data needed)."""
    from srprior.data.embedded import default_split

    return PatchSampler(default_split(2)[0], 2, patch=48, batch=48, seed=0).next()[0]


def _reference_rank(crop: torch.Tensor, textured: torch.Tensor) -> np.ndarray:
    """§3.3 read literally, from scikit-image and scipy: per template, the mean clamp(NCC) of the 5 best local
    maxima (5x5 NMS over the positions whose 5x5 square fits) of its whole SSM except its own centre."""
    from scipy.ndimage import maximum_filter

    grey = crop.permute(1, 2, 0).double().numpy() @ LUMA
    inside = np.zeros((48, 48), bool)
    inside[2:46, 2:46] = True
    ranks = []
    for n, (cy, cx) in enumerate(ssm.grid_centers(48, 48, 5, 5).tolist()):
        u = np.where(inside, match_template(grey, grey[cy - 2:cy + 3, cx - 2:cx + 3], pad_input=True).clip(0), -1.0)
        peaks = (u == maximum_filter(u, size=5, mode="constant", cval=-np.inf)) & inside
        peaks[cy, cx] = False
        best = np.sort(u[peaks])[::-1][:5]
        ranks.append(np.pad(best, (0, 5 - len(best))).mean() if textured[n] else -1.0)
    return np.array(ranks)


def test_selection_area_global_changes_only_the_poi_choice(embedded_crops):
    """selection_area=global: the PoI is the template with the best 5 local maxima of its whole SSM (checked
    against scikit-image + scipy); it differs from the scenario-area choice on most real crops (91.8 % of 512 in
    benchmarks/extractor_readings.py), and given the template, SSRs, targets and validity are the scenario's."""
    lr = embedded_crops
    cfg = ssm.ExtractorConfig(n_ssr=2)
    base, glob = ssm.extract(lr, cfg), ssm.extract(lr, ssm.ExtractorConfig(n_ssr=2, selection_area="global"))
    changed = base.template != glob.template
    assert changed.float().mean() > 0.5
    textured = ssm._tiles(ssm.luma(lr), 5, 5)[0].std(1, unbiased=False) >= cfg.min_std
    for b in range(6):
        ref = _reference_rank(lr[b], textured[b])
        assert ref[glob.template[b]] == pytest.approx(ref.max(), abs=1e-4)
    # the scenario's SSRs for the globally chosen template: extract on that template alone (others made flat)
    for b in torch.nonzero(changed)[:8, 0].tolist():
        assert torch.equal(glob.poi_center[b], ssm.grid_centers(48, 48, 5, 5)[glob.template[b]])
        allowed = ssm._allowed(48, 48, cfg, torch.device("cpu"))[glob.template[b]]
        d = _chebyshev(glob.ssr_centers[b], glob.poi_center[b])
        assert torch.all((d >= 1) & (d <= 3)) and allowed[glob.ssr_centers[b, :, 0], glob.ssr_centers[b, :, 1]].all()
        u = match_template(lr[b].permute(1, 2, 0).double().numpy() @ LUMA,
                           *[(lr[b].permute(1, 2, 0).double().numpy() @ LUMA)[y - 2:y + 3, x - 2:x + 3]
                             for y, x in [glob.poi_center[b].tolist()]], pad_input=True).clip(0)
        masked = np.where(allowed.numpy(), u, -1.0)
        from scipy.ndimage import maximum_filter

        peaks = np.sort(masked[(masked == maximum_filter(masked, 5, mode="constant", cval=-np.inf))
                               & allowed.numpy()])[::-1]
        top = np.pad(peaks, (0, 2))[:2]
        np.testing.assert_allclose(glob.sim[b].numpy()[:len(peaks[:2])], peaks[:2], atol=1e-4)
        assert bool(glob.valid[b]) == bool((top >= cfg.min_sim).all() and len(peaks) >= 2)
    for name in base.__dataclass_fields__:
        if name != "ssm":
            assert torch.equal(getattr(base, name)[~changed], getattr(glob, name)[~changed]), name
    assert torch.equal(base.ssm, glob.ssm)


@pytest.mark.parametrize("scenario", ["local", "global"])
def test_invalid_samples_keep_fills_missing_peaks_and_raises_the_valid_share(embedded_crops, scenario):
    """keep: the PoI choice is unchanged, every textured PoI is valid, samples valid under drop are unchanged,
    and missing peaks are filled with the allowed positions of highest NCC (Scenario 1 at N_SSR = 5: 0.2 % valid
    under drop, 97.9 % under keep on 512 crops)."""
    lr = embedded_crops
    for n_ssr in (3, 5):
        drop, keep = (ssm.extract(lr, ssm.ExtractorConfig(scenario=scenario, n_ssr=n_ssr, invalid_samples=m))
                      for m in ("drop", "keep"))
        textured = ssm._tiles(ssm.luma(lr), 5, 5)[0].std(1, unbiased=False)[torch.arange(len(lr)), keep.template]
        assert torch.equal(keep.template, drop.template) and torch.equal(keep.valid, textured >= 0.02)
        assert torch.all(drop.valid <= keep.valid)
        if scenario == "local" and n_ssr == 5:
            assert drop.valid.float().mean() < 0.05 and keep.valid.float().mean() > 0.9
        for name in ("ssr_centers", "sim"):
            assert torch.equal(getattr(drop, name)[drop.valid], getattr(keep, name)[drop.valid]), name
        cfg = ssm.ExtractorConfig(scenario=scenario, n_ssr=n_ssr)
        for b in torch.nonzero(keep.valid & ~drop.valid)[:5, 0].tolist():
            allowed = ssm._allowed(48, 48, cfg, torch.device("cpu"))[keep.template[b]]
            got = {tuple(c) for c in keep.ssr_centers[b].tolist()}
            assert len(got) == n_ssr and all(allowed[y, x] for y, x in got)
            cand = keep.candidate[b, 0]
            torch.testing.assert_close(keep.sim[b], cand[keep.ssr_centers[b, :, 0], keep.ssr_centers[b, :, 1]])
            # the positions drop picked that are peaks with NCC >= 0 stay; the fill beats every other allowed
            # non-peak position on NCC
            rest = allowed.clone()
            rest[keep.ssr_centers[b, :, 0], keep.ssr_centers[b, :, 1]] = False
            pooled = torch.nn.functional.max_pool2d(torch.where(allowed, cand, -1.0)[None, None], 5, 1, 2)[0, 0]
            non_peak = rest & (torch.where(allowed, cand, -1.0) != pooled)
            fill = [cand[y, x] for y, x in got if pooled[y, x] != cand[y, x]]
            if fill and non_peak.any():
                assert min(fill) >= cand[non_peak].max()
