"""srprior.stats against scipy (ttest_ind, ttest_ind_from_stats, t / nct quantiles), a Monte-Carlo Welch test,
and issue 11's numbers recomputed from the thesis cells transcribed in search_spaces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from srprior import stats
from srprior.search_spaces import get_table

HC = "psnr_hardcases"


@pytest.mark.parametrize("n_a, n_b", [(2, 2), (4, 6), (5, 3), (30, 12)])
def test_welch_matches_scipy(n_a, n_b):
    rng = np.random.default_rng(n_a * 100 + n_b)
    a, b = rng.normal(28.24, 0.04, n_a), rng.normal(28.27, 0.1, n_b)
    ref = sps.ttest_ind(b, a, equal_var=False)
    got = stats.welch(a, b)
    assert got.effect == pytest.approx(b.mean() - a.mean(), abs=1e-12)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert got.df == pytest.approx(ref.df, rel=1e-10)
    assert got.ci == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-10)
    assert (got.n_a, got.n_b) == (n_a, n_b)
    summary = stats.welch_from_stats(a.mean(), a.std(ddof=1), n_a, b.mean(), b.std(ddof=1), n_b)
    assert summary.p == pytest.approx(sps.ttest_ind_from_stats(b.mean(), b.std(ddof=1), n_b, a.mean(),
                                                               a.std(ddof=1), n_a, equal_var=False).pvalue)
    assert summary.ci == pytest.approx(got.ci, rel=1e-12)


def test_welch_degenerate_and_bad_input():
    flat = stats.welch([30.0, 30.0], [30.5, 30.5])  # no spread: no t statistic
    assert math.isnan(flat.p) and flat.effect == 0.5 and flat.ci == (0.5, 0.5)
    assert stats.verdict(flat, 1) == stats.UNDECIDED
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.welch([30.0], [30.1, 30.2])
    with pytest.raises(ValueError, match="arm a: n=1"):
        stats.welch_from_stats(30.0, 0.1, 1, 30.1, 0.1, 4)
    with pytest.raises(ValueError, match="arm b: std=-0.1"):
        stats.welch_from_stats(30.0, 0.1, 4, 30.1, -0.1, 4)
    assert math.isnan(stats.mde(0.0, 0.0, 4, 4))
    assert stats.seeds_needed(0.0, 0.04, 0.03) is None
    assert stats.seeds_needed(0.1, 0.0, 0.0) is None


def test_power_is_the_noncentral_t_and_alpha_at_zero():
    sa, sb, na, nb, effect = 0.05, 0.02, 4, 6, 0.04
    df = stats.welch_df(sa, na, sb, nb)
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    crit = sps.t.ppf(0.975, df)
    ref = sps.nct.sf(crit, df, effect / se) + sps.nct.cdf(-crit, df, effect / se)
    assert stats.power(effect, sa, sb, na, nb) == pytest.approx(ref, rel=1e-9)
    assert stats.power(-effect, sa, sb, na, nb) == pytest.approx(ref, rel=1e-9)
    assert stats.power(0.0, sa, sb, na, nb) == pytest.approx(0.05, abs=1e-12)


def _simulated_power(effect, sa, sb, na, nb, reps=20_000, seed=11) -> float:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, sa, (reps, na)), rng.normal(effect, sb, (reps, nb))
    return float(np.mean(sps.ttest_ind(b, a, axis=1, equal_var=False).pvalue < 0.05))


def test_power_against_monte_carlo_welch_tests():
    """The noncentral-t approximation vs 20,000 simulated Welch tests (fixed seed, < 1 s): close from ~8 seeds
    per arm; at the thesis's 4 seeds it overstates the power by about 0.04 (documented in srprior.stats)."""
    assert stats.power(0.05, 0.044, 0.034, 8, 10) == pytest.approx(_simulated_power(0.05, 0.044, 0.034, 8, 10),
                                                                   abs=0.012)
    at_mde = _simulated_power(0.0949, 0.0439, 0.0342, 4, 4)
    assert stats.power(0.0949, 0.0439, 0.0342, 4, 4) == pytest.approx(0.80, abs=1e-3)
    assert 0.74 < at_mde < 0.78


@pytest.mark.parametrize("sa, sb, n_a, n_b", [(0.0439, 0.0342, 4, 4), (0.1206, 0.0319, 6, 6),
                                              (0.0679, 0.0113, 2, 2), (0.05, 0.0, 3, 8)])
def test_mde_has_the_target_power(sa, sb, n_a, n_b):
    d = stats.mde(sa, sb, n_a, n_b)
    assert stats.power(d, sa, sb, n_a, n_b) == pytest.approx(0.8, abs=1e-8)
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(sa**2 / n_a + sb**2 / n_b)
    assert d > z  # t quantiles are wider than normal ones
    assert stats.mde(sa, sb, n_a + 4, n_b + 4) < d


@pytest.mark.parametrize("effect, sa, sb", [(0.02, 0.0439, 0.0342), (-0.16, 0.0439, 0.0537), (1.0, 0.3, 0.1)])
def test_seeds_needed_is_the_smallest_n_with_the_power(effect, sa, sb):
    n = stats.seeds_needed(effect, sa, sb)
    assert stats.power(effect, sa, sb, n, n) >= 0.8
    assert n == 2 or stats.power(effect, sa, sb, n - 1, n - 1) < 0.8
    z = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2
    assert stats.seeds_needed(effect, sa, sb, method="normal") == max(2, math.ceil(z * (sa**2 + sb**2) / effect**2))
    with pytest.raises(ValueError, match="method"):
        stats.seeds_needed(effect, sa, sb, method="exact")


def test_verdicts():
    up = stats.welch_from_stats(28.0, 0.01, 4, 28.2, 0.01, 4)
    assert up.p < 0.05
    assert stats.verdict(up, 1) == stats.REPRODUCED
    assert stats.verdict(up, -1) == stats.CONTRADICTED
    assert stats.verdict(stats.welch_from_stats(28.0, 0.1, 4, 28.01, 0.1, 4), 1) == stats.UNDECIDED
    with pytest.raises(ValueError, match="expected_sign"):
        stats.verdict(up, 0)


def _cells(table: str, row_a: str, row_b: str) -> tuple:
    spec = get_table(table)
    (ma, sa), (mb, sb) = spec.row(row_a).thesis[HC], spec.row(row_b).thesis[HC]
    n = len(spec.row_seeds(spec.row(row_a)))
    assert n == len(spec.row_seeds(spec.row(row_b)))
    return ma, sa, mb, sb, n


# Issue 11: claim -> (table, row a, row b), effect (dB), Welch p, seeds per arm (normal approx.; exact t)
ISSUE_11 = {
    "EDSR-T λ_AP=1e-4 helps": (("4.2", "edsr-t/baseline", "edsr-t/lambda-1e-4"), 0.02, 0.50, 61, 62),
    "RNAN-T λ_AP=1e-4 helps": (("4.2", "rnan-t/baseline", "rnan-t/lambda-1e-4"), 0.04, 0.46, 77, 79),
    # The issue says "Scenario 2 beats 1", but its +0.03 dB / p 0.34 are Scenario 2 against the baseline
    # (Scenario 2 vs 1 is +0.01 dB, p 0.71).
    "Scenario 2 (EDSR-T)": (("4.5", "edsr-t/baseline", "edsr-t/scenario-2"), 0.03, 0.34, 30, 31),
    "EDSR-B with the prior": (("4.8", "edsr-b/baseline", "edsr-b/lambda-1e-4"), 0.05, 0.48, 15, 17),
    "EDSR-T λ_AP=5e-3 hurts": (("4.2", "edsr-t/baseline", "edsr-t/lambda-5e-3"), -0.16, 0.004, 2, 3),
}


@pytest.mark.parametrize("claim", list(ISSUE_11))
def test_issue_11_numbers_from_the_thesis_cells(claim):
    (table, row_a, row_b), effect, p, normal, exact = ISSUE_11[claim]
    ma, sa, mb, sb, n = _cells(table, row_a, row_b)
    comp = stats.welch_from_stats(ma, sa, n, mb, sb, n)
    assert comp.effect == pytest.approx(effect, abs=1e-9)
    assert round(comp.p, 3 if p < 0.01 else 2) == p
    assert stats.seeds_needed(comp.effect, sa, sb, method="normal") == normal
    assert stats.seeds_needed(comp.effect, sa, sb) == exact
    if p < 0.05:  # "4 suffice": the thesis's own seeds already exceed what either formula asks
        assert max(normal, exact) <= n == 4
