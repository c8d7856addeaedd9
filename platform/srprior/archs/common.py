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
