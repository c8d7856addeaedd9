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
    std: float  # pooled over rows (root mean of the variances): of the per-seed differences when paired
    source: str  # "runs" (with how many) or "thesis"
    seeds: int | None  # per arm to detect the effect with 80% power; None: no spread to size from
    test: str = "welch"  # "paired": sized from the spread of seed-matched differences row − baseline


def seeds_for_power(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]], effect: float) -> SeedPlan:
    """Seeds per row for the test of every row against its baseline to detect `effect` (in the metric's unit,
    dB for PSNR) with 80% power at α = 0.05: paired, from the spread of the per-seed differences, when rows and
    their baselines share ≥ 2 seeds (seeds pair rows: report.model); else Welch from the runs' own spread (or
    the thesis's printed stds when fewer than two rows have two seeds)."""
    from srprior.stats import paired_seeds_needed, seeds_needed

    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    metric = next((m for m in PRIMARY if m in logged), next(m for m in PRIMARY if m in spec.metrics))
    diffs = _paired_variances(spec, values, metric)
    if diffs:
        std = math.sqrt(math.fsum(diffs) / len(diffs))
        return SeedPlan(spec.name, metric, std, f"runs ({sum(len(v) for v in values.values())}), paired "
                        f"differences of {len(diffs)} row(s)", paired_seeds_needed(effect, std), "paired")
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


def _paired_variances(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]], metric: str) -> list[float]:
    """Per row with a baseline: the variance (ddof 1) of row − baseline over the seeds both ran (≥ 2)."""
    out = []
    for row in spec.rows:
        a, b = values.get(row.baseline or "", {}), values.get(row.id, {})
        seeds = [s for s in sorted(set(a) & set(b)) if metric in a[s] and metric in b[s]]
        if row.baseline and len(seeds) >= 2:
            out.append(float(np.var([b[s][metric] - a[s][metric] for s in seeds], ddof=1)))
    return out
