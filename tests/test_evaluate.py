"""srprior.evaluate: quantised model evaluation and the `srprior eval bicubic` baseline table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from srprior.archs import build_model
from srprior.cli import main
from srprior.data.datasets import ImagePair, benchmark
from srprior.data.imresize import imresize
from srprior.evaluate import bicubic_baseline, bicubic_table, bicubic_upscale, evaluate, score
from srprior.metrics import psnr, rgb_to_y, ssim


def _pairs(n=3, h=20, w=26, scale=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hr = rng.integers(0, 256, size=(h * scale, w * scale, 3), dtype=np.uint8)
        out.append(ImagePair(f"img{i}", hr, np.ascontiguousarray(hr[::scale, ::scale])))
    return out


def test_evaluate_nearest_model_matches_numpy():
    pairs = _pairs()
    model = nn.Upsample(scale_factor=2, mode="nearest")
    model.register_parameter("dummy", nn.Parameter(torch.zeros(1)))  # models have parameters
    got = evaluate(model, pairs, scale=2)
    up = [np.repeat(np.repeat(p.lr, 2, axis=0), 2, axis=1) for p in pairs]  # lr/255*255 rounds back exactly
    assert got["psnr"] == pytest.approx(np.mean([psnr(u, p.hr, 2) for u, p in zip(up, pairs)]), abs=1e-12)
    assert got["ssim"] == pytest.approx(np.mean([ssim(u, p.hr, 2) for u, p in zip(up, pairs)]), abs=1e-12)


def test_evaluate_quantises_like_the_literature():
    torch.manual_seed(0)
    model = build_model("edsr-t-micro", scale=2)
    model.train()
    pairs = _pairs(n=2)
    got = evaluate(model, pairs, scale=2)
    assert model.training  # mode restored
    model.eval()
    srs = []
    for p in pairs:  # the literature's protocol: eval mode, clip to [0, 1], round to uint8, then score
        with torch.no_grad():
            out = model(torch.tensor(p.lr).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
        srs.append(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8))
    assert got == pytest.approx(_skimage_scores(srs, pairs, 2), abs=1e-10)  # scored by scikit-image


def _skimage_scores(sr_images, pairs, crop: int) -> dict[str, float]:
    """PSNR/SSIM of scikit-image on the numpy-cropped Y planes: an independent check of the shave."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ps, ss = [], []
    for sr, p in zip(sr_images, pairs):
        y_sr, y_hr = (rgb_to_y(x)[crop:-crop, crop:-crop] for x in (sr, p.hr))
        ps.append(peak_signal_noise_ratio(y_hr, y_sr, data_range=255))
        ss.append(structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=255))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss))}


def test_shave_6_plus_scale_matches_a_numpy_crop_and_skimage():
    """§4.3's 6 + scale border: only the cropped border changes the score."""
    pairs = _pairs(n=2, h=30, w=34)
    model = nn.Upsample(scale_factor=2, mode="nearest")
    model.register_parameter("dummy", nn.Parameter(torch.zeros(1)))
    up = [np.repeat(np.repeat(p.lr, 2, axis=0), 2, axis=1) for p in pairs]
    default, thesis = evaluate(model, pairs, scale=2), evaluate(model, pairs, scale=2, shave=8)
    assert default == pytest.approx(_skimage_scores(up, pairs, 2), abs=1e-10)
    assert thesis == pytest.approx(_skimage_scores(up, pairs, 8), abs=1e-10)
    assert thesis["psnr"] != pytest.approx(default["psnr"], abs=1e-3)
    for sr, p in zip(up, pairs):  # damage only the 8 px border: invisible under shave = 8
        sr[:8], sr[-8:], sr[:, :8], sr[:, -8:] = 0, 0, 0, 0
    assert score(up, pairs, 2, shave=8) == pytest.approx(thesis, abs=1e-12)
    assert score(up, pairs, 2)["psnr"] < default["psnr"] - 3


def test_bicubic_table_extra_shave_on_set5(data_root):
    pairs = benchmark(data_root, "Set5", 2)
    table = bicubic_table(str(data_root), [2], ["Set5"], extra_shave=6)[("Set5", 2)]
    expected = _skimage_scores([imresize(p.lr, 2) for p in pairs], pairs, 8)
    assert table["psnr"] == pytest.approx(expected["psnr"], abs=1e-10)
    assert table["ssim"] == pytest.approx(expected["ssim"], abs=1e-10)
    assert table["psnr"] - bicubic_baseline(pairs, 2)["psnr"] == pytest.approx(2.6e-4, abs=1e-5)  # 33.6744 vs 33.6741


def test_score_rejects_mismatches():
    pairs = _pairs(n=1)
    with pytest.raises(ValueError, match="x2 pair, evaluated at x3"):
        score([pairs[0].hr], pairs, scale=3)
    with pytest.raises(ValueError, match="does not match HR"):
        score([pairs[0].lr], pairs, scale=2)


def test_bicubic_set5_matches_literature(data_root):
    """Bicubic x2 on Set5: 33.66 dB / 0.9299 in the SR literature (EDSR, RCAN tables)."""
    pairs = benchmark(data_root, "Set5", 2)
    res = bicubic_baseline(pairs, 2)
    assert res == score([imresize(p.lr, 2) for p in pairs], pairs, 2)
    assert bicubic_upscale(pairs[0].lr, 2).shape == pairs[0].hr.shape
    assert res["psnr"] == pytest.approx(33.66, abs=0.02)
    assert res["ssim"] == pytest.approx(0.9299, abs=0.0006)


def test_cli_eval_bicubic_prints_markdown(data_root, capsys):
    assert main(["eval", "bicubic", "--data", str(data_root), "--scale", "2", "4", "--datasets", "Set5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| Method | Scale | Set5 PSNR / SSIM |"
    assert lines[2].startswith("| Bicubic | x2 | 33.6") and lines[3].startswith("| Bicubic | x4 | 28.4")
