"""RNAN (Zhang et al., ICLR 2019), the super-resolution variant of the official code.

Layout: head conv -> non-local group -> (n_resgroups - 2) local groups -> conv -> non-local group,
plus a long skip to the head features, then the sub-pixel tail. A group is one residual attention
module and a conv, *without* a group skip (as in the official code). A residual attention module is
ResBlock -> trunk (2 ResBlocks) gated by a sigmoid mask branch (ResBlock, stride-2 conv, 2 ResBlocks,
stride-2 transposed conv, skip, ResBlock, 1x1 conv), plus identity, then 2 ResBlocks. The non-local
mask branch starts with an embedded-Gaussian non-local block (inter-channels n_feats // 2, output
1x1 conv zero-initialised so the block starts as identity). Attribute names follow the official
code so its state-dict keys line up.

Official-code details kept on purpose: the non-local softmax normalises over the *query* axis
(``softmax(theta^T phi, dim=1)``) and groups have no residual connection. One deviation: the
official mask branch only handles even sizes; here the transposed conv output is cropped to the
input size, which is exact for even sizes and lets odd-sized benchmark images through.
"""

from __future__ import annotations

import torch
from torch import nn

from srprior.archs.common import (MeanShift, ResBlock, Upsampler, check_scale, default_conv,
                                   residual_output, residual_skip)
from srprior.archs.registry import register_arch


class NonLocalBlock(nn.Module):
    """Attention over all h*w positions, x + W(softmax(theta^T phi) g).

    The N x N affinity is formed in query chunks of at most ``max_elems`` elements (over the batch), so
    full-image inference stays within memory; a 48x48 training batch of 16 (N = 2304) is one chunk.
    """

    max_elems = 2**27

    def __init__(self, n_feats: int, inter_channels: int):
        super().__init__()
        self.g = nn.Conv2d(n_feats, inter_channels, 1)
        self.W = nn.Conv2d(inter_channels, n_feats, 1)
        nn.init.zeros_(self.W.weight)
        nn.init.zeros_(self.W.bias)
        self.theta = nn.Conv2d(n_feats, inter_channels, 1)
        self.phi = nn.Conv2d(n_feats, inter_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        n = h * w
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, N, C')
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, C')
        phi = self.phi(x).flatten(2)  # (B, C', N)
        rows = max(1, self.max_elems // (b * n))
        if rows >= n:
            y = torch.softmax(theta @ phi, dim=1) @ g
        else:  # softmax over the query axis needs a per-key normaliser gathered across all query chunks
            acc = torch.promote_types(theta.dtype, torch.float32)  # normaliser in >= fp32 under autocast
            chunks = theta.split(rows, dim=1)
            log_z = torch.stack([torch.logsumexp((t @ phi).to(acc), dim=1) for t in chunks]).logsumexp(0)
            y = torch.cat([torch.exp((t @ phi).to(acc) - log_z.unsqueeze(1)).to(g.dtype) @ g for t in chunks], 1)
        return x + self.W(y.transpose(1, 2).reshape(b, -1, h, w))


class MaskBranch(nn.Module):
    """Down-up mask branch producing a sigmoid gate; ``non_local`` prepends a NonLocalBlock."""

    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        first = [NonLocalBlock(n_feats, n_feats // 2)] if non_local else []
        self.MB_RB1 = nn.Sequential(*first, ResBlock(n_feats))
        self.MB_Down = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, stride=2, padding=1))
        self.MB_RB2 = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))
        self.MB_Up = nn.Sequential(nn.ConvTranspose2d(n_feats, n_feats, 6, stride=2, padding=2))
        self.MB_RB3 = nn.Sequential(ResBlock(n_feats))
        self.MB_1x1conv = nn.Sequential(nn.Conv2d(n_feats, n_feats, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.MB_RB1(x)
        up = self.MB_Up(self.MB_RB2(self.MB_Down(x)))[..., : x.shape[-2], : x.shape[-1]]
        return torch.sigmoid(self.MB_1x1conv(self.MB_RB3(x + up)))


class TrunkBranch(nn.Module):
    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResAttModule(nn.Module):
    """Residual (non-)local attention block: trunk features rescaled by the mask, plus identity."""

    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        self.RA_RB1 = nn.Sequential(ResBlock(n_feats))
        self.RA_TB = nn.Sequential(TrunkBranch(n_feats))
        self.RA_MB = nn.Sequential(MaskBranch(n_feats, non_local))
        self.RA_tail = nn.Sequential(ResBlock(n_feats), ResBlock(n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.RA_RB1(x)
        return self.RA_tail(x + self.RA_TB(x) * self.RA_MB(x))


class ResGroup(nn.Module):
    def __init__(self, n_feats: int, non_local: bool):
        super().__init__()
        self.body = nn.Sequential(ResAttModule(n_feats, non_local), default_conv(n_feats, n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# Table 4.1's "residual blocks" is the number of residual groups, 2 of them non-local (exact x2 parameter counts:
# rnan-t 1,985,347; rnan-b 9,107,267). The -micro preset is for fast CPU runs of the same code paths.
PRESETS = {
    "rnan-b": {"n_resgroups": 10, "n_feats": 64},
    "rnan-t": {"n_resgroups": 2, "n_feats": 64},
    "rnan-t-micro": {"n_resgroups": 3, "n_feats": 8, "bicubic_skip": True},
}


# Non-local blocks keep N×N affinities (N = LR pixels) for the backward: LAM batches fewer path points, and
# HardCases-R's selectors leave RNAN out on a CPU (hours for 1000 candidates)
@register_arch("rnan", PRESETS, micro="rnan-t-micro", quadratic_memory=True)
class RNAN(nn.Module):
    def __init__(self, scale: int = 2, n_resgroups: int = 10, n_feats: int = 64, bicubic_skip: bool = False):
        super().__init__()
        check_scale(scale)
        if n_resgroups < 2:
            raise ValueError(f"n_resgroups must be >= 2 (first and last groups are non-local), got {n_resgroups}")
        if n_feats < 2:
            raise ValueError(f"n_feats must be >= 2 (non-local inter-channels are n_feats // 2), got {n_feats}")
        self.sub_mean = MeanShift(-1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        self.body_nl_low = nn.Sequential(ResGroup(n_feats, non_local=True))
        self.body = nn.Sequential(
            *[ResGroup(n_feats, non_local=False) for _ in range(n_resgroups - 2)],
            default_conv(n_feats, n_feats, 3),
        )
        self.body_nl_high = nn.Sequential(ResGroup(n_feats, non_local=True))
        self.tail = nn.Sequential(Upsampler(scale, n_feats), default_conv(n_feats, 3, 3))
        self.add_mean = MeanShift(+1)
        self.skip = residual_skip(scale, self.tail) if bicubic_skip else None  # micro presets: learn a residual

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(lr))
        res = self.body_nl_high(self.body(self.body_nl_low(x)))
        return residual_output(self.tail(x + res), lr, self.add_mean, self.skip)
