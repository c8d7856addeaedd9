"""Region PSNR (Table 4.7) and attribution-norm sections (Fig. 4.5) against direct numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from srprior.data.datasets import ImagePair
from srprior.data.imresize import bicubic_lr
from srprior.data.io import read_image
from srprior.metrics import psnr
from srprior.method.analysis import (
    TABLE_4_7,
    norm_sections,
    poi_window,
    region_evaluation,
    region_psnr,
    region_scores,
    section_boxes,
    similar_dissimilar_ratio,
    upscale_mask,
)
from srprior.method.ssm import ExtractorConfig, extract


def _pair(h=24, w=30, seed=0):
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-9, 10, size=hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_region_psnr_equals_masked_numpy_psnr():
    sr, hr = _pair()
    rng = np.random.default_rng(1)
    lr_mask = rng.random((12, 15)) < 0.3
    y = lambda im: 16 + im.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255  # noqa: E731
    sr_mask = np.kron(lr_mask, np.ones((2, 2), bool))
    mse = np.mean((y(sr)[sr_mask] - y(hr)[sr_mask]) ** 2)
    assert region_psnr(sr, hr, lr_mask, scale=2) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)
    # an SR-resolution mask with scale=1 is the same region; a full mask equals psnr without shave
    assert region_psnr(sr, hr, sr_mask) == pytest.approx(region_psnr(sr, hr, lr_mask, 2), abs=1e-12)
    assert region_psnr(sr, hr, np.ones((24, 30), bool)) == pytest.approx(psnr(sr, hr, 2, shave=0), abs=1e-12)
    # extractor-style (1,1,h,w) masks are accepted
    assert region_psnr(sr, hr, lr_mask[None, None], 2) == region_psnr(sr, hr, lr_mask, 2)


def test_upscale_mask_maps_lr_pixels_to_sr_blocks():
    m = np.zeros((3, 4), bool)
    m[1, 2] = True
    up = upscale_mask(m, 3)
    assert up.shape == (9, 12) and up.sum() == 9 and up[3:6, 6:9].all()


def test_region_scores_table_4_7():
    sr, hr = _pair()
    poi = np.zeros((12, 15), bool)
    poi[2:5, 3:6] = True
    ssr = np.zeros((2, 12, 15), bool)
    ssr[0, 6:9, 1:4] = True
    ssr[1, 7:10, 10:13] = True
    scores = region_scores(sr, hr, poi, ssr, scale=2)
    assert scores["psnr_poi"] == region_psnr(sr, hr, poi, 2)
    assert scores["psnr_ssr"] == region_psnr(sr, hr, ssr[0] | ssr[1], 2)
    assert scores["psnr_total"] == (scores["psnr_poi"] + scores["psnr_ssr"]) / 2
    # every printed row of Table 4.7 (as transcribed, and checked against the thesis text in
    # test_search_spaces) obeys Total = (SSR + PoI) / 2 to its 4 printed decimals
    from srprior.search_spaces import get_table

    for row in get_table("4.7").rows:
        total, ssr_, poi_ = (row.thesis[m][0] for m in ("psnr_total", "psnr_ssr", "psnr_poi"))
        assert total == pytest.approx((ssr_ + poi_) / 2, abs=1e-4), row.id


def _nearest_model() -> nn.Module:
    model = nn.Upsample(scale_factor=2, mode="nearest")
    model.register_parameter("dummy", nn.Parameter(torch.zeros(1)))  # models have parameters
    return model


def _no_overlap(centers: torch.Tensor, size: int) -> bool:
    """(K, 2) centres of size x size squares: pairwise Chebyshev distance >= size."""
    d = (centers[:, None] - centers[None]).abs().max(-1).values + size * torch.eye(len(centers), dtype=torch.long)
    return bool((d >= size).all())


def test_region_evaluation_counts_every_image_and_matches_region_scores():
    """Two noisy tilings with a 20 px LR period (recurrences: valid) and one noise image (none: invalid). All
    three are scored; the metrics are the means of region_scores on each image's masks, computed here."""
    rng = np.random.default_rng(7)
    tile = rng.integers(0, 256, size=(40, 40, 3))
    hrs = [np.roll(np.tile(tile, (4, 4, 1)), 6 * i, axis=1) + rng.integers(-4, 5, size=(160, 160, 3))
           for i in range(2)]
    hrs = [np.clip(hr, 0, 255).astype(np.uint8) for hr in hrs]
    hrs.append(rng.integers(0, 256, size=(160, 160, 3), dtype=np.uint8))
    pairs = [ImagePair(f"img{i}", np.ascontiguousarray(hr), np.ascontiguousarray(hr[::2, ::2]))
             for i, hr in enumerate(hrs)]
    model = _nearest_model()
    model.train()
    got = region_evaluation(model, pairs, scale=2)
    assert model.training  # mode restored
    expected, valid = [], []
    for p in pairs:
        ex = extract(torch.tensor(p.lr).permute(2, 0, 1)[None].float() / 255, TABLE_4_7)
        assert ex.ssr_masks.shape[1] == 5 and ex.poi_mask[0, 0].sum() == 17 * 17
        assert _no_overlap(ex.ssr_centers[0], 17)
        sr = np.repeat(np.repeat(p.lr, 2, axis=0), 2, axis=1)
        expected.append(region_scores(sr, p.hr, ex.poi_mask[0, 0].numpy(), ex.ssr_masks[0].numpy(), 2))
        valid.append(bool(ex.valid[0]))
    assert valid == [True, True, False]
    assert got.metrics["n_valid"] == 2 and got.metrics["n_images"] == 3
    for key in ("psnr_total", "psnr_ssr", "psnr_poi"):
        assert got.metrics[key] == pytest.approx(np.mean([e[key] for e in expected]), abs=1e-12)
        assert got.metrics[key] != pytest.approx(np.mean([e[key] for e in expected[:2]]), abs=1e-3)
    lr, sr, ex = got.example
    assert lr is pairs[0].lr and sr.shape == pairs[0].hr.shape and torch.equal(ex.ssr_centers, extract(
        torch.tensor(lr).permute(2, 0, 1)[None].float() / 255, TABLE_4_7).ssr_centers)
    with pytest.raises(ValueError, match="at least one"):
        region_evaluation(model, [], 2)


@pytest.mark.slow
def test_table_4_7_ssrs_do_not_overlap_on_real_urban100_crops(data_root):
    """128x128 LR centre crops (a HardCases image is 256x256 HR): with NMS over 33 px the five 17x17 SSRs are
    disjoint from each other and from the PoI; the training NMS (5 px) would let them overlap."""
    crops = []
    for path in sorted((data_root / "Urban100" / "HR").glob("*.png"))[:8]:
        lr = bicubic_lr(read_image(path), 2)
        h, w = lr.shape[:2]
        crops.append(lr[(h - 128) // 2:(h + 128) // 2, (w - 128) // 2:(w + 128) // 2])
    lr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    ext = extract(lr, TABLE_4_7)
    assert ext.valid.sum() >= 7
    for b in range(len(crops)):
        assert _no_overlap(ext.ssr_centers[b], 17)
        assert torch.all((ext.ssr_centers[b] - ext.poi_center[b]).abs().max(-1).values >= 17)
    old = extract(lr, ExtractorConfig(**{**TABLE_4_7.__dict__, "nms_size": 5}))
    assert sum(not _no_overlap(c, 17) for c in old.ssr_centers) >= 6


def test_region_psnr_errors():
    sr, hr = _pair()
    with pytest.raises(ValueError, match="does not match the SR image"):
        region_psnr(sr, hr, np.ones((12, 15), bool), scale=3)
    with pytest.raises(ValueError, match="empty mask"):
        region_psnr(sr, hr, np.zeros((12, 15), bool), scale=2)


def test_section_boxes_grow_by_step_and_clip():
    """Fig. 4.5's sections: squares centred on the PoI, each `step` wider than the last, clipped to the map;
    checked as masks against the pixels within Chebyshev distance of the centre."""
    yy, xx = np.mgrid[:128, :100]
    for center in ((64, 50), (5, 95)):
        boxes = section_boxes((128, 100), center, poi_size=13, n_sections=5, step=20)
        assert len(boxes) == 6
        for k, (y0, y1, x0, x1) in enumerate(boxes):
            got = np.zeros((128, 100), bool)
            got[y0:y1, x0:x1] = True
            reach = 6 + 10 * k  # half-width: the 13×13 PoI plus step/2 per section
            expected = (np.abs(yy - center[0]) <= reach) & (np.abs(xx - center[1]) <= reach)
            assert np.array_equal(got, expected), (center, k)
    with pytest.raises(ValueError, match="outside"):
        section_boxes((10, 10), (10, 3))


def test_poi_window_covers_the_poi_in_sr_pixels():
    y, x, size = poi_window((40, 55), poi_size=13, scale=2)
    lr_poi = np.zeros((90, 100), bool)
    lr_poi[34:47, 49:62] = True
    sr = upscale_mask(lr_poi, 2)
    assert sr[y : y + size, x : x + size].all() and sr.sum() == size * size


def test_norm_sections_against_direct_sums():
    rng = np.random.default_rng(4)
    attr = rng.normal(size=(3, 90, 100))
    a = np.abs(attr).sum(axis=0)
    cy, cx = 40, 55
    got = norm_sections(attr, (cy, cx), poi_size=13, n_sections=3, step=20)
    poi = a[cy - 6 : cy + 7, cx - 6 : cx + 7].sum()
    expected = [a[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1].sum() / poi for r in (16, 26, 36)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(np.diff(got) > 0) and got[0] > 1


def test_similar_dissimilar_ratio_against_direct_sums():
    rng = np.random.default_rng(5)
    attr = rng.random((60, 60))
    ssm = rng.random((60, 60))
    boxes = section_boxes(attr.shape, (30, 30), poi_size=5, n_sections=2, step=10)
    got = similar_dissimilar_ratio(attr, ssm, 0.7, boxes[1:], exclude=boxes[0])
    keep = np.ones_like(attr, bool)
    keep[28:33, 28:33] = False
    expected = []
    for y0, y1, x0, x1 in boxes[1:]:
        a, s, k = attr[y0:y1, x0:x1], ssm[y0:y1, x0:x1], keep[y0:y1, x0:x1]
        expected.append(a[k & (s >= 0.7)].sum() / a[k & (s < 0.7)].sum())
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # everything similar: no dissimilar attribution -> inf
    assert np.isinf(similar_dissimilar_ratio(attr, np.ones_like(ssm), 0.5, boxes[1:])).all()
    with pytest.raises(ValueError, match="shape"):
        similar_dissimilar_ratio(attr, ssm[:10], 0.5, boxes)
