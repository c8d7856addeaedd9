"""Pieces shared by EDSR, RCAN and RNAN (EDSR-PyTorch's ``model/common.py`` conventions).

Parameter-count convention: ``MeanShift`` holds its fixed 1x1 colour shift as *buffers*, so it adds
nothing to ``sum(p.numel() for p in model.parameters())``. The original code keeps it as two frozen
``nn.Parameter`` tensors (3*3 + 3 = 12 values each, 24 per model); counts quoted in papers that
include them are 24 higher. Buffer names (``weight``, ``bias``) match the original state-dict keys,
so official checkpoints still load.

All blocks avoid in-place ops so that ``torch.autograd.grad(..., create_graph=True)`` through the
input gradient (the attribution prior) works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: RGB mean of DIV2K images 1-800 on a [0, 1] scale (used by all three original codes).
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4)


def default_conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """'Same'-padded convolution used throughout the EDSR family."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class MeanShift(nn.Module):
    """Adds (sign=+1) or subtracts (sign=-1) the DIV2K mean, as a fixed 1x1 convolution in buffers."""

    def __init__(self, sign: int, rgb_mean: tuple[float, float, float] = DIV2K_MEAN, rgb_range: float = 1.0):
        super().__init__()
        if sign not in (-1, 1):
            raise ValueError(f"MeanShift sign must be -1 or +1, got {sign}")
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class ResBlock(nn.Module):
    """EDSR residual block: conv-(BN)-ReLU-conv-(BN), scaled by ``res_scale``, plus identity."""

    def __init__(self, n_feats: int, kernel_size: int = 3, bn: bool = False, res_scale: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(default_conv(n_feats, n_feats, kernel_size))
            if bn:
                layers.append(nn.BatchNorm2d(n_feats))
            if i == 0:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: one conv + PixelShuffle(3) for x3, log2(s) stages of PixelShuffle(2) for x2/x4."""

    def __init__(self, scale: int, n_feats: int):
        check_scale(scale)
        layers: list[nn.Module] = []
        for factor in ([3] if scale == 3 else [2] * (scale // 2)):
            layers += [default_conv(n_feats, factor * factor * n_feats, 3), nn.PixelShuffle(factor)]
        super().__init__(*layers)


def check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES} (PixelShuffle upsamplers), got {scale!r}")


def check_positive(**values: float) -> None:
    """Raise naming the offending architecture argument."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")


class BicubicUpsample(nn.Module):
    """×scale upsampling that equals MATLAB's bicubic ``imresize`` (data/imresize.py: a = -0.5, edge replication,
    height then width, each pass saturated and rounded to the 8-bit grid): the skip that the micro presets learn a
    residual over (``bicubic_skip=True``), so an untrained model *is* the reports' bicubic reference (Δ = 0) and a
    residual under half a grey level leaves a pixel as bicubic made it. The rounding passes the gradient straight
    through, so the input gradient (the prior's attribution and its double backward) is the interpolation's. At an
    integer scale, output phase p of input pixel i always takes the taps i-2..i+2 (distance (p + 0.5)/s - 0.5 - k):
    each axis is one fixed convolution with s output channels, interleaved; the weights are a non-persistent
    buffer (state dicts keep their keys)."""

    def __init__(self, scale: int):
        super().__init__()
        check_scale(scale)
        d = (torch.arange(scale, dtype=torch.float64)[:, None] + 0.5) / scale - 0.5 \
            - torch.arange(-2, 3, dtype=torch.float64)[None, :]
        a = d.abs()
        w = torch.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1,
                        torch.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, torch.zeros_like(a)))
        self.scale = scale
        self.register_buffer("taps", (w / w.sum(1, keepdim=True)).float(), persistent=False)  # (s, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s, taps = self.scale, self.taps.to(x.dtype)
        y = _to_8bit(x.reshape(b * c, 1, h, w) * 255)  # grey levels: ×2 and ×4 sums are then exact in fp32
        y = F.pad(y, (2, 2, 2, 2), mode="replicate")
        y = _to_8bit(F.conv2d(y, taps.view(s, 1, 5, 1)))  # (bc, s, h, w + 4): rows of phase p
        y = y.permute(0, 2, 1, 3).reshape(b * c, 1, h * s, w + 4)
        y = _to_8bit(F.conv2d(y, taps.view(s, 1, 1, 5)))  # (bc, s, h*s, w): columns of phase p
        return y.permute(0, 2, 3, 1).reshape(b, c, h * s, w * s) / 255


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Saturate to [0, 255] and round half up (MATLAB's uint8 pass) with a straight-through gradient: the forward
    is the reference's, the backward the interpolation's."""
    x = x.clamp(0, 255)
    return x + (torch.floor(x + 0.5) - x).detach()


def residual_output(out: torch.Tensor, lr: torch.Tensor, add_mean: MeanShift, skip: BicubicUpsample | None):
    """A model's output: the tail's plus the DIV2K mean (thesis models), or the tail's as a residual over the
    bicubic upsampling of the input (``bicubic_skip``: the model starts near bicubic and learns what it lacks)."""
    return add_mean(out) if skip is None else out + skip(lr)


def residual_skip(scale: int, tail: nn.Sequential) -> BicubicUpsample:
    """The bicubic skip of a ``bicubic_skip`` model, with the tail's last convolution zeroed so that the untrained
    model equals the bicubic reference and training starts from it."""
    nn.init.zeros_(tail[-1].weight)
    nn.init.zeros_(tail[-1].bias)
    return BicubicUpsample(scale)
