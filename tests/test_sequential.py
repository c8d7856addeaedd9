"""srprior.sequential and srprior.designs: the group-sequential design over seeds, proved by simulation.

Monte-Carlo margins: a family-wise rate estimated from F families has standard error √(0.05·0.95/F); the
assertions allow 2.6 standard errors above 0.05 (one-sided 99.5 %), and the naive design must exceed 0.05 by
far more than that, so the test fails if the boundaries are replaced by p < α/r at every look."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from srprior.options import SweepOptions
from srprior import designs
from srprior.plan import make_plan
from srprior.search_spaces.claims import CLAIMS_BY_TABLE
from srprior.sequential import (BOUNDARY, CAP, FUTILITY, Design, decide, nominal_p, paired_t, simulate,
                                spent)
from srprior.stats import CONTRADICTED, REPRODUCED, UNDECIDED

F = 20_000
MARGIN = 2.6 * math.sqrt(0.05 * 0.95 / F)


def _fwer(sim) -> float:
    return float((sim.sign != 0).any(axis=1).mean())


@pytest.mark.parametrize("budget,table", [("thesis", "4.2"), ("cpu-hour", "4.2"), ("thesis", "4.5")])
def test_sequential_family_wise_error_under_no_effect_and_the_naive_looks_exceed_it(budget, table):
    """Thousands of families of claims with no effect, at the budget's own looks, caps and futility rule:
    false reproduced/contradicted in at most 5 % of families; the same looks at a naive α/r each inflate it."""
    plan = make_plan(SweepOptions.of({"table": table, "budget": budget}))
    design, caps = designs.design_of(budget)
    claims = designs.planned_claims(plan, table)
    thesis = [e / sd for e, sd in map(designs.standardized, claims)]
    claim_caps = [designs.claim_cap(c, design, caps) for c in claims]
    sim = simulate(design, [0.0] * len(claims), thesis, F, seed=11, caps=claim_caps)
    naive = simulate(design, [0.0] * len(claims), [math.nan] * len(claims), F, seed=11, caps=claim_caps,
                     spending=False)
    assert _fwer(sim) <= 0.05 + MARGIN
    assert _fwer(naive) > 0.05 + 4 * MARGIN, "the naive repeated test must fail this test's own bound"
    full = simulate(design, [0.0] * len(claims), [math.nan] * len(claims), F, seed=12)  # no futility, no caps
    assert 0.05 - 6 * MARGIN < _fwer(full) <= 0.05 + MARGIN  # valid, and not by spending far less than α


def test_sequential_small_df_is_calibrated_where_normal_boundaries_would_inflate():
    """A lone claim at 2-3-4-6-8 seeds (1-2 df at the first looks): the calibrated t boundaries spend 0.05, not
    less and not more (normal-theory boundaries as nominal p gave 0.0535 here, srprior.sequential's docstring);
    the first look's threshold is the spending function itself (its t p is exactly uniform)."""
    design = Design((2, 3, 4, 6, 8), futility=0.0)
    sim = simulate(design, [0.0], [math.nan], 4 * F, seed=5)
    assert abs(_fwer(sim) - 0.05) < 2.6 * math.sqrt(0.05 * 0.95 / (4 * F))
    assert nominal_p((2, 3, 4, 6, 8), 8, 0.05)[0] == pytest.approx(spent(2 / 8, 0.05), rel=1e-12)


def test_sequential_boundaries_match_the_normal_theory_at_large_n():
    """At 25-50 pairs the t test is nearly a z test: the two looks' crossing probability equals α(t) under the
    bivariate normal with correlation √(n1/n2) (scipy's integration, independent of the simulation)."""
    c1, c2 = nominal_p((25, 50), 50, 0.05)
    z1, z2 = sps.norm.isf(c1 / 2), sps.norm.isf(c2 / 2)
    rho = math.sqrt(0.5)
    inside = sps.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf([z1, z2], lower_limit=[-z1, -z2])
    assert 1 - inside == pytest.approx(0.05, abs=1.5e-3)
    assert c1 == pytest.approx(spent(0.5, 0.05))


@pytest.mark.parametrize("budget", ["thesis", "cpu-hour"])
def test_sequential_boundaries_grow_with_their_level(budget):
    """Consonance, on which the group-sequential Holm procedure rests: at every look the threshold at α/r
    grows as r falls."""
    design, _ = designs.design_of(budget)
    for cap in {design.cap, 3}:
        looks = design.claim_looks(cap)
        levels = np.array([nominal_p(looks, cap, 0.05 / r) for r in range(1, 10)])
        assert (np.diff(levels, axis=0) <= 0).all()


def test_sequential_design_saves_trials_at_equal_or_higher_power():
    """Under the thesis's effects (paired spread at ρ = 0.96): cpu-hour's three rows need fewer than its 30
    trials in expectation and reproduce at least as many claims; the thesis budget's tables cost at most 70 %
    of the fixed design's H100-hours and reproduce more claims."""
    cpu = designs.design_cost(make_plan(SweepOptions.of({"table": "4.2", "budget": "cpu-hour"})))
    assert cpu.fixed_trials == 30 and cpu.expected_trials["thesis"] < 30
    assert cpu.decided["thesis"] >= cpu.decided["fixed"]
    thesis = designs.design_cost(make_plan(SweepOptions.of({"table": "all", "budget": "thesis"})), families=1000)
    assert thesis.expected_h100_hours["thesis"] <= 0.70 * thesis.fixed_h100_hours
    assert thesis.decided["thesis"] > thesis.decided["fixed"]
    assert thesis.fixed_h100_hours == pytest.approx(165.98, abs=0.05)  # the plan's all-in total (training 161.4 h + evaluation 4.6 h)
    assert set(thesis.json()["sequential"]) >= {"expected_h100_hours_under_thesis_effects",
                                                "expected_h100_hours_under_no_effect", "max_h100_hours"}


def test_sequential_decide_replays_real_differences():
    """decide on seed-matched differences: p is scipy's ttest_rel; a large effect crosses its boundary with
    the expected (or opposite) sign, a null claim with a printed effect stops for futility or at its cap."""
    rng = np.random.default_rng(3)
    design = Design((3, 5, 8), futility=0.1)
    a = rng.normal(30.0, 0.05, 8)
    big, null = a - 0.3 + rng.normal(0, 0.01, 8), a + rng.normal(0, 0.01, 8)
    diffs = [[big[:n] - a[:n] for n in design.looks], [big[:n] - a[:n] for n in design.looks],
             [null[:n] - a[:n] for n in design.looks]]
    found = decide(design, [8, 8, 8], [-1, 1, 1], [-0.16, -0.16, 0.001], diffs)
    assert (found[0].verdict, found[0].reason) == (REPRODUCED, BOUNDARY)
    assert (found[1].verdict, found[1].reason) == (CONTRADICTED, BOUNDARY)
    assert found[2].verdict == UNDECIDED and found[2].reason in (FUTILITY, CAP)
    n = found[0].n
    assert found[0].p == pytest.approx(sps.ttest_rel(big[:n], a[:n]).pvalue, rel=1e-9)
    _, _, p = paired_t(np.array((big - a).sum()), np.array(((big - a) ** 2).sum()), 8)
    assert float(p) == pytest.approx(sps.ttest_rel(big, a).pvalue, rel=1e-9)


def test_sequential_claims_of_the_cpu_hour_rows():
    """cpu-hour trains three EDSR-T rows: its family is §4.4.1's five EDSR-T claims (three on PSNR, the two
    direction-only DI claims), λ_AP = 5e-3 among them; the DI claims buy no seeds (their cap is the pilot)."""
    plan = make_plan(SweepOptions.of({"table": "4.2", "budget": "cpu-hour"}))
    keys = {c.key for c in designs.planned_claims(plan, "4.2")}
    assert len(keys) == 5 and "4.2:edsr-t/lambda-5e-3-vs-edsr-t/baseline:psnr_hardcases" in keys
    assert keys <= {c.key for c in CLAIMS_BY_TABLE["4.2"]}
    design, caps = designs.design_of("cpu-hour")
    assert {c.metric: designs.claim_cap(c, design, caps) for c in designs.planned_claims(plan, "4.2")
            if c.metric == "di"} == {"di": design.pilot}


def test_sequential_design_in_the_printed_plan(tmp_path, capsys):
    """`--plan` prints both designs before anything trains: cpu-hour's 30 fixed trials against the sequential
    design's looks, expected trials and maximum."""
    from srprior.commands import sweep as sweep_command

    code = sweep_command.main(["--table", "4.2", "--budget", "cpu-hour", "--plan", "--output-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "    fixed: 30 trials" in out
    assert "sequential: pilot 3 seeds per row, looks at 3, 4, 6, 8, 12 seeds, cap 12" in out
    assert "expected under the thesis's effects: 28.6 trials" in out and "at most 36 trials" in out
