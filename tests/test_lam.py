"""LAM (blur-path integrated gradients), Gini and the Diffusion Index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate
from skimage import data

from srprior.archs import build_model
from srprior.method.lam import (
    LAMConfig,
    blur_path,
    di_images,
    di_windows,
    diffusion_index,
    gini,
    lam,
    lam_figure,
    mean_di,
    path_attribution,
    window_objective,
)


def _image(size: int) -> np.ndarray:
    """A natural LR image (the astronaut's face), uint8 (size, size, 3)."""
    return np.asarray(Image.fromarray(data.astronaut()[:256, 128:384]).resize((size, size), Image.LANCZOS))


def _model(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset, scale=2)


def _gini_quadratic(g: np.ndarray) -> float:
    """Eq. 4.7 literally: sum_ij |g_i - g_j| / (2 n^2 mean(g))."""
    g = g.ravel().astype(np.float64)
    return np.abs(g[:, None] - g[None, :]).sum() / (2 * g.size**2 * g.mean())


def _reference_di(grad: np.ndarray, channels: str = "abs-of-sum") -> float:
    """DI as the LAM reference defines it, written from its definition: grad_abs_norm (|sum over channels| / max)
    then gini (+1e-7, Eq. 4.7 over all pairs) and (1 - G) * 100."""
    g2 = np.abs(grad.sum(axis=0)) if channels == "abs-of-sum" else np.abs(grad).sum(axis=0)
    return (1 - _gini_quadratic(g2 / g2.max() + 1e-7)) * 100


@pytest.mark.parametrize("shape", [(1,), (2,), (7, 9), (40, 50)])
def test_gini_matches_quadratic_definition(shape):
    rng = np.random.default_rng(sum(shape))
    for g in (rng.random(shape), rng.exponential(size=shape) ** 3, rng.integers(0, 3, size=shape) + 0.0):
        if g.sum() == 0:
            continue
        assert gini(g) == pytest.approx(_gini_quadratic(g), abs=1e-10)


@pytest.mark.parametrize("channels", ["abs-of-sum", "sum-of-abs"])
def test_di_matches_the_lam_reference_definition(channels):
    rng = np.random.default_rng(11)
    signed = rng.normal(size=(3, 30, 40)) * rng.exponential(size=(1, 30, 40)) ** 2  # heavy-tailed, mixed signs
    assert diffusion_index(signed, channels) == pytest.approx(_reference_di(signed, channels), abs=1e-9)
    lam_raw = path_attribution(_model("edsr-t-micro"), _image(24), (16, 16, 16), LAMConfig(steps=10)).raw
    assert diffusion_index(lam_raw, channels) == pytest.approx(_reference_di(lam_raw, channels), abs=1e-9)
    assert diffusion_index(7.5 * signed, channels) == pytest.approx(diffusion_index(signed, channels), abs=1e-9)


def test_di_channel_reduction_is_the_only_difference_between_the_readings():
    """Opposite-signed channels cancel in |sum| (reference) and add up in sum |.|; one channel: the same DI."""
    rng = np.random.default_rng(12)
    g = rng.random((20, 20)) ** 4
    one = np.stack([g, np.zeros_like(g), np.zeros_like(g)])
    assert diffusion_index(one) == pytest.approx(diffusion_index(one, "sum-of-abs"), abs=1e-12)
    cancel = np.stack([g, -g, g])
    cancel[1, :10] = -3 * g[:10]  # the top half sums to -g, the bottom half to +g: same |sum| as one channel
    assert diffusion_index(cancel) == pytest.approx(diffusion_index(g), abs=1e-12)
    cancel[1, 10:] = -2 * g[10:]  # the bottom half now sums to 0: only the top half contributes to |sum|
    assert diffusion_index(cancel) < diffusion_index(cancel, "sum-of-abs") - 10


def test_di_delta_and_uniform_maps():
    delta = np.zeros((30, 40))
    delta[12, 7] = 5.0
    n, floor = delta.size, 1e-7  # reference floor: Gini((x + c)) = Gini(x) * mean(x) / (mean(x) + c)
    assert diffusion_index(delta) == pytest.approx((1 - (n - 1) / n / (1 + n * floor)) * 100, abs=1e-10)
    assert diffusion_index(np.full((30, 40), 0.3)) == pytest.approx(100.0, abs=1e-10)
    raw = np.stack([delta, -delta, delta])  # |sum| = |delta|, sum |.| = 3 |delta|: same normalised map
    assert diffusion_index(raw) == diffusion_index(raw, "sum-of-abs") == diffusion_index(delta)


def test_gini_rejects_meaningless_input():
    with pytest.raises(ValueError, match="non-negative"):
        gini(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="all-zero"):
        gini(np.zeros(5))
    with pytest.raises(ValueError, match="attribution map"):
        diffusion_index(np.ones(5))
    with pytest.raises(ValueError, match="not all zero"):
        diffusion_index(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        diffusion_index(np.ones((3, 4, 4)), "mean")


def test_blur_path_endpoints_and_kernel():
    lr = torch.tensor(_image(20)).permute(2, 0, 1).double() / 255
    cfg = LAMConfig(sigma=1.2, steps=50, kernel_size=9)
    path = blur_path(lr, cfg)
    assert path.shape == (51, 3, 20, 20)
    assert torch.equal(path[-1], lr)  # sigma 0: the image itself
    # step 0: blur(sigma=1.2), 9x9 normalised Gaussian, reflect-101 borders (cv2 default = scipy 'mirror')
    ax = np.arange(-4, 5)
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.2**2))
    k /= k.sum()
    expected = np.stack([correlate(c, k, mode="mirror") for c in lr.numpy()])
    np.testing.assert_allclose(path[0].numpy(), expected, atol=1e-12)
    # in between: less and less blur, i.e. closer to the image (the last sigmas < 0.1 are numerically deltas)
    dist = [(p - lr).abs().sum().item() for p in path]
    assert all(a >= b for a, b in zip(dist[:-1], dist[1:])) and dist[0] > dist[25] > dist[40] > 0


def test_window_objective_is_lam_gradient_magnitude():
    rng = np.random.default_rng(3)
    sr = rng.random((2, 3, 30, 30))
    y, x, s = 5, 9, 16
    c = sr[:, :, y : y + s + 1, x : x + s + 1]
    expected = np.sqrt((c[:, :, :-1, :-1] - c[:, :, 1:, :-1]) ** 2
                       + (c[:, :, :-1, :-1] - c[:, :, :-1, 1:]) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(window_objective(torch.tensor(sr), (y, x, s)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(("preset", "size"), [("edsr-t-micro", 32), ("rcan-t-micro", 24), ("rnan-t-micro", 16)])
def test_lam_completeness_on_micro_models(preset, size):
    model = _model(preset)
    model.train()
    img = _image(size)
    window = (size - 8, size - 8, 16)
    attr = path_attribution(model, img, window)
    assert model.training  # mode restored
    assert attr.raw.shape == (3, size, size) and np.isfinite(attr.raw).all()
    # IG completeness: the attribution sums to F(image) - F(baseline), up to the 50-step Riemann error
    delta = attr.objective_image - attr.objective_baseline
    assert delta > 0  # the blurred baseline has smaller output gradients
    assert attr.raw.sum() == pytest.approx(delta, rel=0.04)
    assert lam(model, img, window, LAMConfig(steps=50)) == pytest.approx(attr.map)


def test_lam_riemann_error_shrinks_with_steps():
    model, img, window = _model("edsr-t-micro"), _image(24), (16, 16, 16)
    errors = []
    for steps in (10, 50):
        a = path_attribution(model, img, window, LAMConfig(steps=steps))
        errors.append(abs(a.raw.sum() / (a.objective_image - a.objective_baseline) - 1))
    assert errors[1] < errors[0] / 3


def test_batched_lam_equals_unbatched():
    model, img, window = _model("rnan-t-micro"), _image(16), (8, 8, 16)
    cfg = LAMConfig(steps=12, chunk=5)  # chunks 5, 5, 2
    batched = path_attribution(model, img, window, cfg).raw
    serial = path_attribution(model, img, window, LAMConfig(steps=12, chunk=1)).raw
    np.testing.assert_allclose(batched, serial, rtol=0, atol=1e-5 * np.abs(serial).max())


def test_lam_is_local_for_edsr():
    """EDSR-micro sees 2*2+3 LR convs (+1 HR conv) around the window: attribution is exactly 0 beyond that."""
    attr = lam(_model("edsr-t-micro"), _image(40), (32, 32, 16))  # window covers LR rows/cols 16..24
    support = np.argwhere(attr > 0)
    assert support.min() >= 16 - 8 and support.max() <= 24 + 8
    assert attr[:8].sum() == 0 and attr[:, 33:].sum() == 0


def test_window_must_fit_output():
    with pytest.raises(ValueError, match="inside the SR output"):
        lam(_model("edsr-t-micro"), _image(16), (17, 0, 16))  # SR is 32 px; 17 + 16 + 1 > 32


def test_di_protocol_and_figure(tmp_path):
    assert di_windows((128, 128, 3), scale=2) == [(120, 120, 16)]
    assert di_windows((21, 30), scale=3) == [(23, 37, 16)]
    with pytest.raises(ValueError, match="too small"):
        di_windows((8, 8), scale=2)
    model, images = _model("edsr-t-micro"), [_image(20), _image(24)]
    raws = [path_attribution(model, im, di_windows(im.shape, 2)[0]).raw for im in images]
    di = mean_di(model, images, scale=2)
    assert di == pytest.approx(np.mean([_reference_di(r) for r in raws]), abs=1e-9) and 0 < di < 100
    other = mean_di(model, images, scale=2, channels="sum-of-abs")
    assert other == pytest.approx(np.mean([_reference_di(r, "sum-of-abs") for r in raws]), abs=1e-9)
    img = images[0]
    window = di_windows(img.shape, 2)[0]
    out = lam_figure(img, lam(model, img, window), window, tmp_path / "fig" / "lam.png", scale=2, title="EDSR")
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 300


def test_lam_accepts_views_and_tensors():
    model, img, window = _model("edsr-t-micro"), _image(16), (8, 8, 16)
    cfg = LAMConfig(steps=5, chunk=5)
    ref = lam(model, np.ascontiguousarray(img[:, ::-1]), window, cfg)
    np.testing.assert_array_equal(lam(model, img[:, ::-1], window, cfg), ref)
    as_tensor = torch.tensor(img[:, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    np.testing.assert_array_equal(lam(model, as_tensor, window, cfg), ref)
    with pytest.raises(ValueError, match=r"uint8 \(H,W,3\)"):
        lam(model, img.astype(np.float32), window, cfg)


def test_di_images_are_the_lam_demo_inputs(data_root):
    images = di_images(data_root, scale=2)
    assert len(images) == 7
    assert [im.shape for im in images] == [(128, 128, 3)] * 5 + [(150, 150, 3), (128, 128, 3)]  # 6.png is 300 px
    assert all(im.dtype == np.uint8 for im in images)
