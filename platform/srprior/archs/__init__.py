"""SR architectures, one file each, each registering its presets and traits (srprior.archs.registry).

``build_model("rnan-t", scale=2)`` builds a preset; keyword overrides replace preset fields (e.g.
``n_resblocks=15``). Models map float (B, 3, h, w) in [0, 1] to (B, 3, h*s, w*s) for s in 2, 3, 4.
Build under ``with torch.device("meta"):`` to count parameters without allocating. Every module of this folder
is imported here, so a new architecture file registers itself without being listed anywhere.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from torch import nn

from srprior.archs.registry import ARCHS, PRESETS, ArchSpec, arch_of, fuses, micro_preset, register_arch

__all__ = ["ARCHS", "PRESETS", "ArchSpec", "arch_of", "build_model", "fuses", "micro_preset", "register_arch"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("common", "registry"):
        importlib.import_module(f"{__name__}.{_module.name}")


def build_model(preset: str, scale: int = 2, **overrides) -> nn.Module:
    """Instantiate ``PRESETS[preset]`` at ``scale`` with ``overrides`` applied to its kwargs."""
    spec = arch_of(preset)
    kwargs = {k: v for k, v in {**PRESETS[preset], **overrides}.items() if k != "arch"}
    accepted = set(inspect.signature(spec.cls).parameters) - {"scale"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"preset {preset!r} ({spec.name}): unknown override(s) {unknown}; {spec.name} accepts {sorted(accepted)}"
        )
    return spec.cls(scale=scale, **kwargs)
