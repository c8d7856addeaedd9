"""Architectures: exact Table 4.1 parameter counts, shapes, double backward (checked against finite
differences), bf16 autocast, CUDA, preset validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from srprior.archs import ARCHS, PRESETS, build_model
from srprior.archs.common import DIV2K_MEAN, MeanShift, ResBlock
from srprior.archs.rnan import NonLocalBlock

MICRO = ["edsr-t-micro", "rcan-t-micro", "rnan-t-micro"]

# x2 counts, MeanShift in buffers. Table 4.1 rounds them to 40.7M, 1.4M, 15.4M, 5.0M, 9.1M, 1.9M.
TABLE_COUNTS = {
    "edsr-b": 40_729_603,
    "edsr-t": 1_369_859,
    "rcan-b": 15_444_643,
    "rcan-t": 5_023_603,
    "rnan-b": 9_107_267,
    "rnan-t": 1_985_347,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(preset: str, scale: int = 2, **overrides) -> nn.Module:
    with torch.device("meta"):
        return build_model(preset, scale, **overrides)


def micro(preset: str, scale: int = 2, dtype: torch.dtype = torch.float32, live_non_local: bool = True) -> nn.Module:
    """Seeded micro model; RNAN's zero-initialised non-local output convs and the zeroed last conv of the micro
    presets' residual tail get weights so that every path is live."""
    torch.manual_seed(0)
    model = build_model(preset, scale).to(dtype)
    if live_non_local:
        for module in model.modules():
            if isinstance(module, NonLocalBlock):
                nn.init.normal_(module.W.weight, std=0.3)
        model.tail[-1].reset_parameters()
    return model


@pytest.mark.parametrize("preset", MICRO)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_micro_presets_start_as_the_matlab_bicubic_reference(preset, scale):
    """`bicubic_skip`: an untrained micro model is the reports' bicubic reference (data/imresize.py, MATLAB-exact)
    to the last grey level, on a real image; the thesis presets have no skip (Table 4.1 as printed)."""
    from srprior.data.embedded import default_split
    from srprior.data.imresize import imresize
    from srprior.evaluate import quantise, to_tensor

    lr = default_split(scale)[1][0].lr[:40, :52]
    with torch.no_grad():
        sr = build_model(preset, scale)(to_tensor(lr))
    assert (sr * 255 - torch.round(sr * 255)).abs().max() < 1e-4  # on the 8-bit grid, as MATLAB's uint8 passes
    assert np.array_equal(quantise(sr), imresize(lr, scale))
    assert all(kwargs.get("bicubic_skip", False) == name.endswith("-micro") for name, kwargs in PRESETS.items())


def test_bicubic_skip_passes_the_interpolation_gradient():
    """The skip's rounding is straight-through: its input gradient is the bicubic interpolation's (each LR pixel
    feeds s² outputs with weights summing to s² away from the border), so the prior's attribution sees it."""
    from srprior.archs.common import BicubicUpsample

    x = (0.25 + 0.5 * torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    (grad,) = torch.autograd.grad(BicubicUpsample(2)(x).sum(), x, create_graph=True)
    torch.testing.assert_close(grad[..., 2:-2, 2:-2], torch.full_like(grad[..., 2:-2, 2:-2], 4.0))


@pytest.mark.parametrize("preset", sorted(TABLE_COUNTS))
def test_table_4_1_parameter_counts_are_exact(preset):
    assert n_params(meta_model(preset)) == TABLE_COUNTS[preset]


def test_ablation_presets_structure_and_counts():
    conv64 = 64 * 64 * 9 + 64
    bn = meta_model("edsr-t-bn")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 32  # 2 per block
    assert not any(isinstance(m, nn.BatchNorm2d) for m in meta_model("edsr-t").modules())
    assert n_params(bn) == TABLE_COUNTS["edsr-t"] + 32 * 2 * 64
    fifteen = meta_model("edsr-t-15")
    assert sum(isinstance(m, ResBlock) for m in fifteen.modules()) == 15
    assert n_params(fifteen) == TABLE_COUNTS["edsr-t"] - 2 * conv64
    assert n_params(meta_model("edsr-t", n_resblocks=15)) == n_params(fifteen)


def test_upsampler_counts_per_scale():
    # x3: one conv to 9*64 channels; x4: two x2 stages (each conv 64 -> 256).
    x2_up = 64 * 256 * 9 + 256
    assert n_params(meta_model("edsr-t", 3)) == TABLE_COUNTS["edsr-t"] - x2_up + 64 * 576 * 9 + 576
    assert n_params(meta_model("edsr-t", 4)) == TABLE_COUNTS["edsr-t"] + x2_up


def test_meanshift_is_a_fixed_buffer_shift():
    x = torch.rand(2, 3, 5, 4)
    sub = MeanShift(-1)
    assert list(sub.parameters()) == [] and set(dict(sub.named_buffers())) == {"weight", "bias"}
    torch.testing.assert_close(sub(x), x - torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1))
    torch.testing.assert_close(MeanShift(+1)(sub(x)), x)


@pytest.mark.parametrize("preset", MICRO)
def test_output_shapes_for_all_scales(preset):
    x = torch.rand(2, 3, 24, 24)
    for scale in (2, 3, 4):
        with torch.no_grad():
            assert micro(preset, scale)(x).shape == (2, 3, 24 * scale, 24 * scale)


def test_rnan_accepts_odd_sizes():
    with torch.no_grad():
        assert micro("rnan-t-micro", 3)(torch.rand(1, 3, 13, 11)).shape == (1, 3, 39, 33)


@pytest.mark.parametrize("preset", MICRO)
def test_deterministic_init(preset):
    a, b = (micro(preset, live_non_local=False).state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)
    c = build_model(preset).state_dict()
    assert not torch.equal(a["head.0.weight"], c["head.0.weight"])


def input_gradient_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attribution prior's shape: a norm of d(centre output)/d(input), kept differentiable."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    h, w = out.shape[-2:]
    centre = out[..., h // 2 - 2 : h // 2 + 2, w // 2 - 2 : w // 2 + 2]
    (grad,) = torch.autograd.grad(centre.sum(), x, create_graph=True)
    return (grad.to(torch.promote_types(grad.dtype, torch.float32)) ** 2).sum()


def all_grads_finite(model: nn.Module) -> bool:
    """Every weight got a finite gradient (biases that cannot move the input gradient get None)."""
    grads = [(p.ndim, p.grad) for p in model.parameters()]
    return all(g is not None and bool(torch.isfinite(g).all()) for ndim, g in grads if ndim > 1 or g is not None)


@pytest.mark.parametrize("preset", MICRO)
def test_double_backward_matches_finite_differences(preset):
    model = micro(preset, dtype=torch.float64)
    x = torch.rand(1, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = [p for p in model.parameters()]
    input_gradient_loss(model, x).backward()
    for name, p in model.named_parameters():
        if p.ndim == 1 and p.grad is None:  # biases of piecewise-linear paths do not move the input gradient
            p.grad = torch.zeros_like(p)
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if p.ndim > 1:
            assert p.grad.abs().sum() > 0, name
    # Directional derivative along a random parameter direction vs central differences.
    gen = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction))
    eps, losses = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
        losses.append(input_gradient_loss(model, x).detach())
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
    numeric = (losses[0] - losses[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("preset", MICRO)
def test_bf16_autocast_on_cpu(preset):
    model = micro(preset)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() < 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = input_gradient_loss(model, x)
    loss.backward()
    assert torch.isfinite(loss) and all_grads_finite(model)


def test_non_local_chunked_path_matches_dense():
    torch.manual_seed(0)
    block = NonLocalBlock(6, 3).double()
    nn.init.normal_(block.W.weight)
    x = torch.randn(2, 6, 7, 5, dtype=torch.float64, requires_grad=True)
    dense = block(x)
    (dense_grad,) = torch.autograd.grad(dense.square().sum(), x)
    block.max_elems = 2 * 35 * 4  # 4 query rows per chunk, the last chunk partial
    chunked = block(x)
    (chunked_grad,) = torch.autograd.grad(chunked.square().sum(), x)
    torch.testing.assert_close(chunked, dense)
    torch.testing.assert_close(chunked_grad, dense_grad)
    # Independent reference: softmax over the query axis (official RNAN), written out per key.
    b, c, n = 2, 3, 35
    theta = block.theta(x).reshape(b, c, n)
    phi = block.phi(x).reshape(b, c, n)
    g = block.g(x).reshape(b, c, n)
    affinity = torch.einsum("bci,bcj->bij", theta, phi)
    weights = affinity.exp() / affinity.exp().sum(dim=1, keepdim=True)  # normalise over queries i
    y = torch.einsum("bij,bcj->bci", weights, g).reshape(b, c, 7, 5)
    torch.testing.assert_close(dense, x + block.W(y))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("preset", MICRO)
def test_cuda_forward_backward_matches_cpu(preset):
    model = micro(preset)
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        cpu_out = model(x)
    model = model.cuda()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    loss = input_gradient_loss(model, x.cuda())
    loss.backward()
    assert all_grads_finite(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x.cuda()).cpu(), cpu_out, rtol=1e-4, atol=1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.isfinite(model(x.cuda())).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rnan_t_training_batch_double_backward():
    torch.manual_seed(0)
    model = build_model("rnan-t").cuda()
    loss = input_gradient_loss(model, torch.rand(16, 3, 48, 48, device="cuda"))
    loss.backward()
    assert torch.isfinite(loss) and all_grads_finite(model)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="valid presets: .*edsr-t.*rnan-t"):
        build_model("edsr-x")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['n_resgroups'\]"):
        build_model("edsr-t-micro", n_resgroups=3)
    with pytest.raises(ValueError, match="scale must be one of"):
        build_model("edsr-t-micro", scale=8)
    with pytest.raises(ValueError, match="n_resgroups must be >= 2"):
        build_model("rnan-t-micro", n_resgroups=1)
    with pytest.raises(ValueError, match="reduction"):
        build_model("rcan-t-micro", reduction=32)


def test_every_preset_names_a_registered_arch():
    assert {p["arch"] for p in PRESETS.values()} == set(ARCHS)
