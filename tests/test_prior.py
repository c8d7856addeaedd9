"""Attribution prior: double-backward gradients vs finite differences, Eq. 3.2-3.10 vs numpy, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srprior.archs import build_model
from srprior.method.prior import PriorConfig, attribution_prior, prior_config
from srprior.method.ssm import Extraction, ExtractorConfig, extract


def _periodic(n: int, size: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Period-3 random tiles plus mild noise: valid PoIs with local (window: d = 3) SSRs, non-zero attributions."""
    g = torch.Generator().manual_seed(seed)
    tile = torch.rand(n, 3, 3, 3, generator=g, dtype=torch.float64)
    img = tile.repeat(1, 1, -(-size // 3), -(-size // 3))[..., :size, :size]
    return (0.8 * img + 0.2 * torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("preset", ["edsr-t-micro", "rnan-t-micro"])
def test_prior_gradient_matches_central_finite_differences_float64(preset):
    torch.manual_seed(0)
    model = build_model(preset, 2).double()
    model.tail[-1].reset_parameters()  # the micro presets zero it (bicubic skip): every weight then gets a gradient
    lr = _periodic(2, 12, seed=1, dtype=torch.float64)
    cfg = PriorConfig(lambda_ap=1e-4, w="sim")
    ext = extract(lr, cfg.extractor)
    assert ext.valid.all()
    l_ap, info = attribution_prior(model, lr, ext, cfg, 2)
    assert info["n_valid"] == 2 and torch.all(info["poi_norm"] > 0) and torch.all(info["ssr_norms"] > 0)
    named = [(n, p) for n, p in model.named_parameters() if p.dim() == 4]  # conv weights (biases: zero grad)
    grads = torch.autograd.grad(l_ap, [p for _, p in named])
    checked = 0
    for (name, p), g in zip(named[:: max(1, len(named) // 5)], grads[:: max(1, len(named) // 5)]):
        i = int(g.abs().reshape(-1).argmax())  # the entry that matters most: FD roundoff is ~1e-10 absolute
        flat = p.data.view(-1)
        h = 1e-6
        old = flat[i].item()
        values = []
        for v in (old + h, old - h, old):
            flat[i] = v  # p.data: no autograd record
            values.append(attribution_prior(model, lr, ext, cfg, 2, create_graph=False)[0].item())
        up, down = values[:2]
        fd, an = (up - down) / (2 * h), g.reshape(-1)[i].item()
        assert abs(an) > 1e-7, f"{name}[{i}] has a vanishing gradient; the check would be vacuous"
        assert abs(fd - an) <= 1e-5 * abs(an), f"{name}[{i}]: autograd {an:.10e} vs finite diff {fd:.10e}"
        checked += 1
    assert checked >= 5


def test_attribution_is_jacobian_sum_over_sr_poi_and_loss_matches_numpy():
    torch.manual_seed(3)
    model = build_model("edsr-t-micro", 2).double()
    lr = _periodic(1, 12, seed=4, dtype=torch.float64)
    cfg = prior_config(w=0.3, n_ssr=2, scenario="arbitrary")
    ext = extract(lr, cfg.extractor)
    l_ap, info = attribution_prior(model, lr, ext, cfg, 2, create_graph=False)
    # Eq. 3.2: sum of the per-pixel input gradients of the SR outputs inside the PoI (x2 coordinates)
    x = lr.clone().requires_grad_(True)
    sr = model(x)
    cy, cx = ext.poi_center[0].tolist()
    attr = np.zeros((3, 12, 12))
    for c in range(3):
        for y in range(2 * (cy - 2), 2 * (cy + 3)):
            for xx in range(2 * (cx - 2), 2 * (cx + 3)):
                attr += torch.autograd.grad(sr[0, c, y, xx], x, retain_graph=True)[0][0].numpy()
    np.testing.assert_allclose(info["attribution"][0].numpy(), attr, rtol=1e-10, atol=1e-13)
    a = np.abs(attr).sum(0)
    n_poi = a[cy - 2:cy + 3, cx - 2:cx + 3].sum()
    n_ssr = np.array([a[y - 2:y + 3, x - 2:x + 3].sum() for y, x in ext.ssr_centers[0].tolist()])
    s = n_ssr / (n_poi + n_ssr)
    np.testing.assert_allclose(info["s"][0].numpy(), s, rtol=1e-10)
    assert l_ap.item() == pytest.approx(float(np.mean((s - 0.3) ** 2)), rel=1e-10)


def test_loss_averages_over_valid_samples_only():
    torch.manual_seed(5)
    model = build_model("edsr-t-micro", 2)
    lr = torch.cat([_periodic(2, 24, seed=6), torch.full((1, 3, 24, 24), 0.5)])
    cfg = PriorConfig(lambda_ap=1e-4)
    ext = extract(lr, cfg.extractor)
    assert ext.valid.tolist() == [True, True, False]
    l_all, info = attribution_prior(model, lr, ext, cfg, 2)
    sub = Extraction(**{k: getattr(ext, k)[:2] for k in ext.__dataclass_fields__})
    l_sub, _ = attribution_prior(model, lr[:2], sub, cfg, 2)
    assert info["n_valid"] == 2
    torch.testing.assert_close(l_all, l_sub, rtol=1e-6, atol=0)
    assert torch.all(info["attribution"][2] == 0)  # the invalid sample's PoI is not attributed


@pytest.mark.parametrize("case", ["flat", "zeros", "zero_model"])
def test_no_nan_or_inf_in_degenerate_cases(case):
    torch.manual_seed(7)
    model = build_model("edsr-t-micro", 2, bicubic_skip=False)  # zero weights must mean a zero output
    lr = {"flat": torch.full((4, 3, 24, 24), 0.25), "zeros": torch.zeros(4, 3, 24, 24)}.get(case)
    if case == "zero_model":
        lr = _periodic(4, 24, seed=8)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    cfg = PriorConfig(lambda_ap=1e-4)
    ext = extract(lr, cfg.extractor)
    l_ap, info = attribution_prior(model, lr, ext, cfg, 2)
    grads = torch.autograd.grad(l_ap, list(model.parameters()), allow_unused=True)
    assert torch.isfinite(l_ap)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    if case == "zero_model":  # zero attribution: s := 0, so L_AP = mean(w^2) over valid samples
        assert info["n_valid"] == 4 and torch.all(info["attribution"] == 0) and torch.all(info["s"] == 0)
        torch.testing.assert_close(l_ap, (ext.sim**2).mean())
    else:  # all-invalid batch
        assert info["n_valid"] == 0 and l_ap.item() == 0.0
        assert all(g is None or torch.all(g == 0) for g in grads)


def test_prior_config_validation_and_extractor_mapping():
    cfg = prior_config(lambda_ap=1e-4, w="Sim", n_ssr=3, scenario=2, poi_size=7, local_window=9)
    assert cfg.w == "sim" and cfg.extractor.scenario == "global"
    assert cfg.extractor == ExtractorConfig(n_ssr=3, scenario="global", poi_size=7, local_window=9)
    assert PriorConfig(w="0.5").w == 0.5 and PriorConfig(w=1).w == 1.0
    for bad, field in (({"lambda_ap": -1e-4}, "lambda_ap"), ({"lambda_ap": float("nan")}, "lambda_ap"),
                       ({"w": 0.0}, "w"), ({"w": 1.5}, "w"), ({"w": "similar"}, "w"), ({"w": True}, "w"),
                       ({"n_ssr": 0}, "n_ssr"), ({"scenario": 7}, "scenario")):
        with pytest.raises(ValueError, match=field):
            prior_config(**bad)
