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


# Multiplicity. A worked example, by hand: p = (0.01, 0.04, 0.03, 0.005), m = 4, sorted 0.005 < 0.01 < 0.03 < 0.04.
# Holm: 4·0.005 = 0.02; 3·0.01 = 0.03 (max with 0.02: 0.03); 2·0.03 = 0.06; 1·0.04 = 0.04 -> max(0.06, 0.04) = 0.06.
# BH: 4·0.005/1 = 0.02, 4·0.01/2 = 0.02, 4·0.03/3 = 0.04, 4·0.04/4 = 0.04; running minimum from the largest: same.
WORKED = [0.01, 0.04, 0.03, 0.005]


def test_holm_and_bh_by_hand():
    assert stats.adjust(WORKED, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert stats.adjust(WORKED) == stats.adjust(WORKED, "holm")
    assert stats.adjust(WORKED, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-15)
    # nan (no test possible) stays nan and is not counted: m stays 4
    got = stats.adjust([0.01, math.nan, 0.04, 0.03, 0.005])
    assert math.isnan(got[1]) and [got[i] for i in (0, 2, 3, 4)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.adjust([0.5, 0.6]) == [1.0, 1.0]  # 2·0.5 = 1.0; 0.6 is raised to it; capped at 1
    assert stats.adjust([0.2]) == [0.2] and stats.adjust([]) == [] and math.isnan(stats.adjust([math.nan])[0])
    with pytest.raises(ValueError, match="correction 'bonferroni' is unknown"):
        stats.adjust(WORKED, "bonferroni")


def _holm_rejects(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as written: step down the sorted p, reject while p_(k) <= alpha / (m - k + 1)."""
    order, out = sorted(range(len(p)), key=p.__getitem__), set()
    for k, i in enumerate(order, start=1):
        if p[i] > alpha / (len(p) - k + 1):
            break
        out.add(i)
    return out


def _bh_rejects(p: list[float], alpha: float) -> set[int]:
    """Benjamini–Hochberg as written: the largest k with p_(k) <= k alpha / m; reject the k smallest."""
    order = sorted(range(len(p)), key=p.__getitem__)
    k = max((k for k, i in enumerate(order, start=1) if p[i] <= k * alpha / len(p)), default=0)
    return set(order[:k])


@pytest.mark.parametrize("seed", range(20))
def test_adjusted_p_reject_exactly_what_the_procedures_reject(seed):
    """Adjusted p <= alpha is the decision of the step-down (Holm) / step-up (BH) procedure at every alpha;
    BH also equals scipy's false_discovery_control."""
    rng = np.random.default_rng(seed)
    p = (rng.uniform(0, 0.2, 12) ** rng.uniform(1, 3)).tolist()
    holm, bh = stats.adjust(p, "holm"), stats.adjust(p, "bh")
    assert bh == pytest.approx(sps.false_discovery_control(p, method="bh").tolist(), rel=1e-12)
    for alpha in np.linspace(0.001, 0.2, 60):
        assert {i for i, q in enumerate(holm) if q <= alpha} == _holm_rejects(p, alpha)
        assert {i for i, q in enumerate(bh) if q <= alpha} == _bh_rejects(p, alpha)
    assert all(h >= b >= r * (1 - 1e-12) for h, b, r in zip(holm, bh, p))  # Holm the stricter; none lowers p


def test_decide_uses_the_given_p():
    assert stats.decide(0.1, 0.03, 1) == stats.REPRODUCED and stats.decide(-0.1, 0.03, 1) == stats.CONTRADICTED
    assert stats.decide(0.1, 0.06, 1) == stats.UNDECIDED and stats.decide(0.1, math.nan, -1) == stats.UNDECIDED


@pytest.mark.parametrize("n", [2, 3, 8, 25])
def test_paired_matches_scipy_ttest_rel(n):
    rng = np.random.default_rng(n)
    seed_luck = rng.normal(0, 0.3, n)  # shared by both arms of a seed: pairing cancels it
    a = {s: 28.2 + seed_luck[i] + rng.normal(0, 0.01) for i, s in enumerate(range(10, 10 + n))}
    b = {s: a[s] + 0.02 + rng.normal(0, 0.01) for s in a}
    b[999] = 50.0  # a seed only one arm ran: not in the paired test
    ref = sps.ttest_rel([b[s] for s in sorted(a)], [a[s] for s in sorted(a)])
    got = stats.paired(a, b)
    assert got.test == "paired" and (got.n_a, got.n_b, got.df) == (n, n, n - 1)
    assert got.p == pytest.approx(ref.pvalue, abs=1e-6)
    assert got.ci == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-10)
    d = np.array([b[s] - a[s] for s in sorted(a)])
    assert got.effect == pytest.approx(d.mean(), abs=1e-12) and got.std_diff == pytest.approx(d.std(ddof=1))
    assert stats.compare(a, b) == got
    welch = stats.welch([a[s] for s in sorted(a)], [b[s] for s in sorted(b)])
    assert welch.test == "welch" and math.isnan(welch.std_diff)


def test_compare_falls_back_to_welch_and_paired_degenerate():
    a, b = {1: 30.0, 2: 30.2}, {3: 30.4, 4: 30.5, 1: 30.1}  # one common seed: Welch over all values
    got = stats.compare(a, b)
    assert got.test == "welch" and (got.n_a, got.n_b) == (2, 3)
    assert got.p == pytest.approx(sps.ttest_ind([30.4, 30.5, 30.1], [30.0, 30.2], equal_var=False).pvalue)
    shifted = stats.paired({1: 30.0, 2: 31.0}, {1: 30.5, 2: 31.5})
    assert math.isnan(shifted.p) and shifted.effect == pytest.approx(0.5) and shifted.std_diff == 0
    with pytest.raises(ValueError, match="at least 2 seeds in both arms"):
        stats.paired({1: 30.0, 2: 30.1}, {2: 30.0, 3: 30.1})


def test_paired_power_mde_and_seeds_against_monte_carlo():
    sd, n = 0.01, 6
    mde = stats.paired_mde(sd, n)
    # the noncentral t with n − 1 df is exact for a paired test of normal differences: simulate it
    rng = np.random.default_rng(0)
    d = rng.normal(mde, sd, (20000, n))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    assert (p < 0.05).mean() == pytest.approx(0.8, abs=0.01)
    assert stats.paired_seeds_needed(mde * 1.001, sd) == n  # just above the MDE at n: n seeds suffice
    assert stats.paired_seeds_needed(mde * 0.999, sd) == n + 1
    need = stats.paired_seeds_needed(0.005, sd)
    assert stats.paired_power(0.005, sd, need) >= 0.8 > stats.paired_power(0.005, sd, need - 1)
    assert stats.paired_seeds_needed(0.0, sd) is None and math.isnan(stats.paired_mde(0.0, 4))
    c = stats.paired({s: float(s) for s in range(5)}, {s: s + 0.1 * (s % 2) for s in range(5)})
    assert stats.comparison_mde(c) == stats.paired_mde(c.std_diff, 5)
    assert stats.comparison_seeds_needed(0.05, c) == stats.paired_seeds_needed(0.05, c.std_diff)
