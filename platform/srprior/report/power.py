"""Seeds per row a table needs to detect an effect with 80% power (`srprior sweep --seeds-for-power`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from srprior.search_spaces.spec import TableSpec

PRIMARY = ("psnr_hardcases", "psnr_hardcases_r", "psnr_urban100", "psnr_bsd100", "psnr_set14", "psnr_set5",
           "psnr_embedded", "psnr_total")  # the metric power is sized on: the thesis's headline set first


@dataclass(frozen=True)
class SeedPlan:
    table: str
    metric: str
    std: float  # pooled over rows (root mean of the per-row variances)
    source: str  # "runs" (with how many) or "thesis"
    seeds: int | None  # per arm to detect the effect with 80% power; None: no spread to size from


def seeds_for_power(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]], effect: float) -> SeedPlan:
    """Seeds per row for a Welch test of every row against its baseline to detect `effect` (in the metric's
    unit, dB for PSNR) with 80% power at α = 0.05, from the runs' own spread (or the thesis's printed stds when
    fewer than two rows have two seeds)."""
    from srprior.stats import seeds_needed

    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    metric = next((m for m in PRIMARY if m in logged), next(m for m in PRIMARY if m in spec.metrics))
    spreads = [np.var([r[metric] for r in runs.values() if metric in r], ddof=1)
               for runs in values.values() if sum(metric in r for r in runs.values()) >= 2]
    source = f"runs ({sum(len(v) for v in values.values())})"
    if len(spreads) < 2:
        thesis_metric = metric if metric in spec.metrics else "psnr_hardcases"
        spreads = [row.thesis[thesis_metric][1] ** 2 for row in spec.rows if thesis_metric in row.thesis]
        metric, source = thesis_metric, "thesis"
    if not spreads:
        return SeedPlan(spec.name, metric, math.nan, source, None)
    std = math.sqrt(math.fsum(spreads) / len(spreads))
    return SeedPlan(spec.name, metric, std, source, seeds_needed(effect, std, std))
