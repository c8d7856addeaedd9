"""SR architectures, one file each; presets are data (name -> kwargs).

``build_model("rnan-t", scale=2)`` builds a preset; keyword overrides replace preset fields (e.g.
``n_resblocks=15``). Models map float (B, 3, h, w) in [0, 1] to (B, 3, h*s, w*s) for s in 2, 3, 4.
Build under ``with torch.device("meta"):`` to count parameters without allocating.
"""

from __future__ import annotations

import inspect

from torch import nn

from srprior.archs.edsr import EDSR
from srprior.archs.presets import PRESETS
from srprior.archs.rcan import RCAN
from srprior.archs.rnan import RNAN

ARCHS: dict[str, type[nn.Module]] = {"edsr": EDSR, "rcan": RCAN, "rnan": RNAN}

__all__ = ["ARCHS", "EDSR", "PRESETS", "RCAN", "RNAN", "build_model"]


def build_model(preset: str, scale: int = 2, **overrides) -> nn.Module:
    """Instantiate ``PRESETS[preset]`` at ``scale`` with ``overrides`` applied to its kwargs."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}")
    kwargs = {**PRESETS[preset], **overrides}
    arch = kwargs.pop("arch")
    if arch not in ARCHS:
        raise ValueError(f"preset {preset!r}: unknown arch {arch!r}; valid archs: {', '.join(sorted(ARCHS))}")
    cls = ARCHS[arch]
    accepted = set(inspect.signature(cls).parameters) - {"scale"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"preset {preset!r} ({arch}): unknown override(s) {unknown}; {arch} accepts {sorted(accepted)}"
        )
    return cls(scale=scale, **kwargs)
