"""The architecture registry: every model file declares its traits beside itself and registers them here.

A new model is one file (BasicSR's `*_arch.py` and decorator): `@register_arch(presets=..., micro=...)` on its
``nn.Module`` class. What the rest of the platform needs to know about an architecture is declared there and
read from here — its presets (thesis Table 4.1 names → kwargs, data), the micro preset a CPU budget swaps in,
whether a preset fuses, whether its evaluation memory grows with the square of the pixels, and whose efficiency
the cost model assumes when efficiency.json has no entry for it. Files under archs/ register on import
(srprior.archs imports every module of its folder); a module elsewhere (a test's) registers when imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """One architecture's traits (see the module docstring)."""

    name: str
    cls: type[nn.Module]
    presets: dict[str, dict[str, Any]]  # preset name -> constructor kwargs (without scale)
    micro: str  # the preset a micro (CPU) budget trains instead of any of this architecture's presets
    fuses: Callable[[dict[str, Any]], bool] = lambda kwargs: True  # may trials of these kwargs train fused?
    quadratic_memory: bool = False  # evaluation keeps N×N affinities (N = LR pixels): LAM chunks, CPU selectors
    efficiency_like: str = "edsr"  # cost model: whose efficiency entries to assume when it has none of its own


ARCHS: dict[str, ArchSpec] = {}
PRESETS: dict[str, dict[str, Any]] = {}  # preset -> {"arch": name, **kwargs}, over every registered architecture


def register_arch(name: str, presets: dict[str, dict[str, Any]], micro: str, **traits: Any):
    """Class decorator: register `cls` as architecture `name` with its presets and traits (ArchSpec)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if micro not in presets:
            raise ValueError(f"architecture {name!r}: micro preset {micro!r} is not one of its presets")
        clash = sorted(p for p in presets if p in PRESETS and PRESETS[p]["arch"] != name)
        if clash:
            raise ValueError(f"architecture {name!r}: preset(s) {clash} belong to another architecture")
        ARCHS[name] = ArchSpec(name, cls, dict(presets), micro, **traits)
        PRESETS.update({p: {"arch": name, **kwargs} for p, kwargs in presets.items()})
        return cls

    return add


def arch_of(preset: str) -> ArchSpec:
    """The architecture of a registered preset (ValueError naming the valid ones otherwise)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return ARCHS[PRESETS[preset]["arch"]]


def micro_preset(preset: str) -> str:
    """The -micro preset of `preset`'s architecture (edsr-t, edsr-t-bn, edsr-b → edsr-t-micro, ...).

    Architectural ablations (BN, 15 blocks) collapse onto the same micro model: smoke runs test the plumbing,
    not the science."""
    return arch_of(preset).micro


def fuses(preset: str) -> bool:
    """Whether trials of `preset` may train as members of one fused network (its architecture decides)."""
    return arch_of(preset).fuses(PRESETS[preset])
