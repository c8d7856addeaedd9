"""EDSR (Lim et al., CVPR-W 2017): head conv, residual blocks without BN, long skip, sub-pixel tail.

``bn=True`` puts BatchNorm back into the residual blocks (thesis Table 4.6 regularisation ablation).
``bicubic_skip=True`` (micro presets only) adds the bicubic upsampling of the input to the output (common.py).
"""

from __future__ import annotations

import torch
from torch import nn

from srprior.archs.common import (MeanShift, ResBlock, Upsampler, check_positive, check_scale,
                                   default_conv, residual_output, residual_skip)
from srprior.archs.registry import register_arch


# Base is the paper's EDSR; Tiny is the paper's "baseline" EDSR (exact x2 parameter counts, MeanShift in buffers:
# edsr-t 1,369,859; edsr-b 40,729,603). The -micro preset is for fast CPU runs of the same code paths.
PRESETS = {
    "edsr-b": {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},
    "edsr-t": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},
    "edsr-t-bn": {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, "bn": True},
    "edsr-t-15": {"n_resblocks": 15, "n_feats": 64, "res_scale": 1.0},
    "edsr-t-micro": {"n_resblocks": 2, "n_feats": 8, "res_scale": 1.0, "bicubic_skip": True},
}


# BatchNorm presets never fuse: a fused step's grouped convolutions have no per-member batch statistics
@register_arch("edsr", PRESETS, micro="edsr-t-micro", fuses=lambda kwargs: not kwargs.get("bn"))
class EDSR(nn.Module):
    def __init__(
        self,
        scale: int = 2,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        bn: bool = False,
        bicubic_skip: bool = False,
    ):
        super().__init__()
        check_scale(scale)
        check_positive(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale)
        self.sub_mean = MeanShift(-1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, 3, bn=bn, res_scale=res_scale) for _ in range(n_resblocks)],
            default_conv(n_feats, n_feats, 3),
        )
        self.tail = nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3, 3))
        self.add_mean = MeanShift(+1)
        self.skip = residual_skip(scale, self.tail) if bicubic_skip else None  # micro presets: learn a residual

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(lr))
        return residual_output(self.tail(x + self.body(x)), lr, self.add_mean, self.skip)
