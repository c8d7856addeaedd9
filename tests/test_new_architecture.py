"""A new model is one file: an architecture declared in a module outside the repository (a temporary file) is
planned, costed, trained two steps and evaluated with no other file changed (srprior.archs.registry)."""

from __future__ import annotations

import importlib.util
import math

import pytest

from srprior import archs, contracts
from srprior.archs import registry

NEW_ARCH = '''
import torch
from torch import nn

from srprior.archs.registry import register_arch


@register_arch("tinynet", {"tinynet-micro": {"n_feats": 4}}, micro="tinynet-micro", efficiency_like="edsr")
class TinyNet(nn.Module):
    def __init__(self, scale: int = 2, n_feats: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(n_feats, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.body(lr)
'''


@pytest.fixture
def tinynet(tmp_path):
    """Import the one new file; afterwards the registry is as it was (other tests list every preset)."""
    before = dict(registry.ARCHS), dict(registry.PRESETS)
    path = tmp_path / "tinynet_arch.py"
    path.write_text(NEW_ARCH)
    spec = importlib.util.spec_from_file_location("tinynet_arch", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    yield "tinynet-micro"
    for table, saved in zip((registry.ARCHS, registry.PRESETS), before):
        table.clear()
        table.update(saved)


def test_new_architecture_in_one_file_plans_trains_and_evaluates(tinynet):
    from srprior.cost import plan_lines
    from srprior.options import SweepOptions
    from srprior.plan import fuse_groups, make_plan
    from srprior.trainers.loop import train
    from srprior.trainers.worker import LocalSession

    assert archs.micro_preset(tinynet) == tinynet and archs.fuses(tinynet)
    assert type(archs.build_model(tinynet, 2)).__name__ == "TinyNet"
    plan = make_plan(SweepOptions(table="4.2", budget="smoke", rows="edsr-t/baseline", seeds=1, steps=2,
                                  set=("preset=tinynet-micro",)))
    (planned,) = plan.trials
    assert planned.trial.config.model.preset == tinynet
    lines = "\n".join(plan_lines(plan.trials, "cpu", 1, fuse_groups(plan.trials, None, "cpu")))
    # no efficiency.json entry for tinynet: the plan assumes edsr's and says so, no KeyError
    assert "tinynet has none: assumed from edsr's, as its file says" in lines
    assert "cpu: " in lines and "assumed (edsr-t-micro fp32 plain's" in lines
    (metrics,) = train([planned.trial], [plan.context], LocalSession())
    assert metrics["step"] == 2
    for name in ("psnr_embedded", "ssim_embedded", "psnr_total", "di"):
        assert math.isfinite(metrics[f"{contracts.SELECTED}{name}"]), name
    assert metrics[f"{contracts.BICUBIC}psnr_embedded"] > 20


def test_a_preset_belongs_to_one_architecture(tinynet):
    with pytest.raises(ValueError, match=r"preset\(s\) \['edsr-t'\] belong to another architecture"):
        registry.register_arch("other", {"edsr-t": {}}, micro="edsr-t")(type("Other", (), {}))
    with pytest.raises(ValueError, match="micro preset 'x-micro' is not one of its presets"):
        registry.register_arch("other", {"x": {}}, micro="x-micro")(type("Other", (), {}))
