"""RCAN (Zhang et al., ECCV 2018): residual-in-residual groups of channel-attention blocks (RCAB).

As in the official code, RCAB ignores ``res_scale`` and each residual group ends with a conv and adds
its input (short skip); the body ends with a conv plus the long skip to the head features.
Module names follow the official code (and EDSR-PyTorch), so its state-dict keys line up.
"""

from __future__ import annotations

import torch
from torch import nn

from srprior.archs.common import (MeanShift, Upsampler, check_positive, check_scale, default_conv,
                                   residual_output, residual_skip)
from srprior.archs.registry import register_arch


class CALayer(nn.Module):
    """Channel attention: global average pool -> 1x1 squeeze (C/r) -> ReLU -> 1x1 excite -> sigmoid gate."""

    def __init__(self, n_feats: int, reduction: int = 16):
        super().__init__()
        if reduction > n_feats:
            raise ValueError(f"reduction={reduction} > n_feats={n_feats} leaves no attention channels")
        self.conv_du = nn.Sequential(
            nn.Conv2d(n_feats, n_feats // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(n_feats // reduction, n_feats, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class RCAB(nn.Module):
    """Residual channel attention block: conv-ReLU-conv-CA plus identity."""

    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.body = nn.Sequential(
            default_conv(n_feats, n_feats, 3),
            nn.ReLU(),
            default_conv(n_feats, n_feats, 3),
            CALayer(n_feats, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``n_resblocks`` RCABs and a conv, with a short skip connection."""

    def __init__(self, n_feats: int, reduction: int, n_resblocks: int):
        super().__init__()
        self.body = nn.Sequential(
            *[RCAB(n_feats, reduction) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# 10 residual groups; Table 4.1's "residual blocks" is the number of RCABs per group (exact x2 parameter counts:
# rcan-t 5,023,603; rcan-b 15,444,643). The -micro preset is for fast CPU runs of the same code paths.
PRESETS = {
    "rcan-b": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
    "rcan-t": {"n_resgroups": 10, "n_resblocks": 6, "n_feats": 64, "reduction": 16},
    "rcan-t-micro": {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4, "bicubic_skip": True},
}


@register_arch("rcan", PRESETS, micro="rcan-t-micro")
class RCAN(nn.Module):
    def __init__(
        self,
        scale: int = 2,
        n_resgroups: int = 10,
        n_resblocks: int = 20,
        n_feats: int = 64,
        reduction: int = 16,
        bicubic_skip: bool = False,
    ):
        super().__init__()
        check_scale(scale)
        check_positive(n_resgroups=n_resgroups, n_resblocks=n_resblocks, n_feats=n_feats, reduction=reduction)
        self.sub_mean = MeanShift(-1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        self.body = nn.Sequential(
            *[ResidualGroup(n_feats, reduction, n_resblocks) for _ in range(n_resgroups)],
            default_conv(n_feats, n_feats, 3),
        )
        self.tail = nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3, 3))
        self.add_mean = MeanShift(+1)
        self.skip = residual_skip(scale, self.tail) if bicubic_skip else None  # micro presets: learn a residual

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(lr))
        return residual_output(self.tail(x + self.body(x)), lr, self.add_mean, self.skip)
