"""The cost of a design: the fixed one (every row at its table's seeds) against the group-sequential one
(srprior.sequential: a pilot for every row, more seeds only for rows of undecided claims, up to a cap).

Expected costs come from the sequential design simulated on each table's claims, under two hypotheses: the
thesis's effects (each claim's printed mean_b − mean_a) and no effect. The simulation needs each claim's spread
of paired differences, which the thesis does not print; it is sd_d = √(s_a² + s_b² − 2ρ s_a s_b) from the
thesis's row stds with the seed-matched correlation ρ = 0.96 measured on the cpu-hour rows (issue 23: λ_AP =
1e-4 against its baseline, 8 seeds). A claim's number of seeds then follows from its effect in units of sd_d;
rows shared by claims take the most any of them needs, rows of no claim stay at the pilot, and a trial shared
by several tables (same key) is paid once. Simulated claims are independent of each other (the shared baseline
rows make them correlated in truth: Holm is valid either way, the expected seeds move little).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from srprior import cost
from srprior.sequential import Design, simulate, simulate_fixed

RHO = 0.96  # seed-matched correlation of two rows' values (cpu-hour rows, issue 23)
FAMILIES = 2000  # simulated families per table and hypothesis: expected seeds to ~1 %
LOOKS = (2, 3, 4, 6, 8)
# Per budget: the looks, and caps per preset (a claim's seeds per row stop at its rows' cap): a claim costs
# its two rows' trials per look, and an RCAN-T/RNAN-T seed costs 3-4 EDSR-T seeds, an EDSR-B seed 15-44. Chosen
# with design_cost (README: the thesis budget at 68 % of the fixed design's all-in hours reproduces 10.1 claims in
# expectation against its 9.1; cpu-hour 28.6 trials against 30, 2.2 claims against 2.1).
GPU_CAPS = {"edsr-b": 2, "rcan-t": 2, "rnan-t": 3}
DESIGNS: dict[str, tuple[Design, dict[str, int]]] = {
    "smoke": (Design((2, 3), futility=0.0), {}),
    "cpu-hour": (Design((3, 4, 6, 8, 12)), {}),
    "short": (Design(LOOKS, futility=0.3), GPU_CAPS),
    "thesis": (Design(LOOKS, futility=0.3), GPU_CAPS),
}


def design_of(budget: str) -> tuple[Design, dict[str, int]]:
    return DESIGNS.get(budget, (Design(LOOKS, futility=0.3), {}))


def trial_seconds(config: Any, ckpt_every: int | None = None) -> float:
    """One trial's H100-seconds, all in: training steps, validations, final evaluations and DI (srprior.cost)."""
    return cost.trial_seconds_all_in(config, "gpu", ckpt_every)


def planned_claims(plan: Any, table: str) -> list:
    """The claims of `table` whose two rows the plan trains."""
    from srprior.search_spaces.claims import CLAIMS_BY_TABLE

    rows = {row for row, _, _ in plan.cells[table]}
    return [c for c in CLAIMS_BY_TABLE.get(table, ()) if c.row_a in rows and c.row_b in rows]


def claim_cap(claim: Any, design: Design, caps: Mapping[str, int]) -> int:
    """Seeds per row a claim may ask for: its preset's cap; the pilot for a direction-only claim (the thesis
    prints no effect to power against, so it buys no seeds and is tested once, at the pilot, with its full α)."""
    from srprior.search_spaces import get_table

    if math.isnan(standardized(claim)[0]):
        return design.pilot
    preset = get_table(claim.table).row(claim.row_a).overrides.get("preset", "edsr-t")
    return min(design.cap, caps.get(preset, design.cap))


def standardized(claim: Any) -> tuple[float, float]:
    """(thesis effect × expected sign, sd_d) of a claim from the thesis's printed cells (see the docstring);
    (nan, 1) when the thesis prints no number for it."""
    from srprior.search_spaces import get_table

    spec = get_table(claim.table)
    cells = [spec.row(r).thesis.get(claim.metric) for r in (claim.row_a, claim.row_b)]
    if None in cells:
        return math.nan, 1.0
    (ma, sa), (mb, sb) = cells
    sd = math.sqrt(max(sa * sa + sb * sb - 2 * RHO * sa * sb, 1e-12))
    return (mb - ma) * claim.expected_sign, sd


@dataclass(frozen=True)
class DesignCost:
    fixed_trials: int
    fixed_h100_hours: float
    expected_trials: dict[str, float]  # "thesis" | "none" -> expected trials of the sequential design
    expected_h100_hours: dict[str, float]
    max_trials: int
    max_h100_hours: float
    decided: dict[str, float]  # "thesis" (sequential), "fixed": expected claims reproduced under the thesis's effects
    design: Design
    caps: dict[str, int]

    def json(self) -> dict[str, Any]:
        """`designs` of `--plan --json`."""
        return {"fixed": {"h100_hours": self.fixed_h100_hours, "trials": self.fixed_trials},
                "sequential": {"expected_h100_hours_under_thesis_effects": self.expected_h100_hours["thesis"],
                               "expected_h100_hours_under_no_effect": self.expected_h100_hours["none"],
                               "max_h100_hours": self.max_h100_hours,
                               "expected_trials_under_thesis_effects": self.expected_trials["thesis"],
                               "expected_trials_under_no_effect": self.expected_trials["none"],
                               "max_trials": self.max_trials, "looks": list(self.design.looks),
                               "caps": self.caps}}


def design_cost(plan: Any, families: int = FAMILIES, seed: int = 0) -> DesignCost:
    """Fixed and sequential costs of a table plan's trials (see the module docstring)."""
    design, caps = design_of(plan.budget)
    configs = {t.key: t.trial.config for t in plan.trials}
    seconds = {c.hash: trial_seconds(c, plan.context.ckpt_every) for c in configs.values()}
    row_config = {(table, row): configs[key].hash for table, cells in plan.cells.items() for row, _, key in cells}
    most = {h: design.pilot for h in seconds}
    seeds = {"thesis": {}, "none": {}}
    decided = {"thesis": 0.0, "fixed": 0.0}
    for table in plan.names:
        claims = planned_claims(plan, table)
        if not claims:
            continue
        effects = np.array([(lambda e, sd: e / sd)(*standardized(c)) for c in claims])
        claim_caps = [claim_cap(c, design, caps) for c in claims]
        fixed_n = [min(sum(1 for r, _, _ in plan.cells[table] if r == row) for row in (c.row_a, c.row_b))
                   for c in claims]
        if min(fixed_n) >= 2:
            signs = simulate_fixed(np.nan_to_num(effects), fixed_n, families, seed)
            decided["fixed"] += float((signs == 1).sum() / families)
        for hypothesis in seeds:
            sim = simulate(design, np.nan_to_num(effects) if hypothesis == "thesis" else 0 * effects, effects,
                           families, seed, claim_caps)
            if hypothesis == "thesis":
                decided["thesis"] += float((sim.sign == 1).sum() / families)
            for j, claim in enumerate(claims):
                for row in (claim.row_a, claim.row_b):
                    h = row_config[(table, row)]
                    seeds[hypothesis][h] = np.maximum(seeds[hypothesis].get(h, design.pilot), sim.seeds[:, j])
                    most[h] = max(most[h], claim_caps[j])
    expected = {hyp: {h: float(np.mean(found.get(h, design.pilot))) for h in seconds} for hyp, found in seeds.items()}
    fixed = sum(seconds[c.hash] for c in configs.values())
    return DesignCost(len(configs), fixed / 3600, {k: math.fsum(v.values()) for k, v in expected.items()},
                      {k: math.fsum(v[h] * seconds[h] for h in seconds) / 3600 for k, v in expected.items()},
                      sum(most.values()), math.fsum(most[h] * seconds[h] for h in seconds) / 3600, decided,
                      design, dict(caps))


def design_lines(plan: Any) -> list[str]:
    """--plan's designs block: the fixed design's total against the sequential one's expected and maximum cost."""
    c = design_cost(plan)

    def h(x: float) -> str:
        return f"{x:.1f}" if x >= 1 else f"{x:.2g}"
    caps = f"; caps {', '.join(f'{p} {n}' for p, n in c.caps.items())}" if c.caps else ""
    ratio = c.expected_h100_hours["thesis"] / c.fixed_h100_hours if c.fixed_h100_hours else math.nan
    return ["  designs (H100-hours all in: training and evaluation; `--until-decided` runs the sequential one):",
            f"    fixed: {c.fixed_trials} trials, {h(c.fixed_h100_hours)} H100-hours",
            f"    sequential: {c.design.text()}{caps}",
            f"      expected under the thesis's effects: {c.expected_trials['thesis']:.1f} trials, "
            f"{h(c.expected_h100_hours['thesis'])} H100-hours ({ratio:.0%} of fixed); "
            f"{c.decided['thesis']:.1f} claims reproduced in expectation",
            f"      the fixed design reproduces {c.decided['fixed']:.1f} claims in expectation (paired t, Holm)",
            f"      expected under no effect: {c.expected_trials['none']:.1f} trials, "
            f"{h(c.expected_h100_hours['none'])} H100-hours; at most {c.max_trials} trials, "
            f"{h(c.max_h100_hours)} H100-hours",
            f"      (simulated: {FAMILIES} families per table; paired spread from the thesis's stds at seed "
            f"correlation {RHO})"]
