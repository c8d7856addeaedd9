"""Welch and seed-paired comparisons over seeds, power, minimum detectable effects and seed planning.

Why this module: the thesis's effects are hundredths of a dB, the same size as its seed-to-seed stds, so a
claim is only as strong as the test behind it. Everything works on per-seed samples (our runs) and on printed
summaries (mean, std, n: the thesis's cells), so both go through the same numbers.

- Comparison: effect = mean_b − mean_a, Welch's t-test (unequal variances: seed counts differ between rows and
  the thesis's stds differ by up to 4×), 95% CI with the Welch–Satterthwaite df, two-sided p.
- Power: the Welch statistic approximated as noncentral t with nc = effect / se and the Welch–Satterthwaite df
  of the planned arms. Against simulated Welch tests it is exact to ~0.01 from 8 seeds per arm, but at 2–4
  seeds it is optimistic (4 seeds: 0.80 vs 0.76 simulated), because the realised df is random and lower; so
  an MDE at the thesis's 4 seeds is a slight underestimate. Seed counts in the tens are unaffected.
- Seeds per arm: the smallest equal n with power ≥ 80% at α = 0.05 (method "t"). Issue 11's numbers (EDSR-T
  λ_AP=1e-4 61, RNAN-T 77, Scenario 2 30, EDSR-B 15) are the normal approximation
  n = (z_{1−α/2} + z_{power})² (s_a² + s_b²) / effect², rounded up (method "normal"); it ignores that the seed
  stds are themselves estimated and comes out 1–2 seeds per arm short of 80% power (exact: 62, 79, 31, 17).
  Its "4 suffice" for λ_AP=5e-3 is the thesis's own 4 seeds, which exceed both formulas (normal 2, t 3).
- Paired: a seed fixes a trial's initial weights and patch stream in every row of a preset (the prior draws from
  its own generator), so two rows' runs of one seed share both and their difference cancels the seed's luck.
  `paired` is the paired t-test of b − a over the seeds both arms ran (n − 1 df; the MDE and seeds needed come
  from the spread of the differences, `paired_mde`, `paired_seeds_needed`); `compare` uses it whenever ≥ 2 seeds
  match and falls back to Welch otherwise. The thesis's cells (summary statistics only) stay Welch.
- Multiplicity: a table report tests several claims at once (26 over all tables; with all nulls true, ~0.48
  chance of at least one false "reproduced" at p < 0.05 each). `adjust` gives Holm's step-down adjusted p
  (family-wise error ≤ α under any dependence: baseline arms are shared between claims) or Benjamini–Hochberg's
  (false discovery rate; valid under positive dependence), and verdicts compare the adjusted p with α.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
LEVEL = 0.95
REPRODUCED, CONTRADICTED, UNDECIDED = "reproduced", "contradicted", "undecided"
CORRECTIONS = {"holm": "Holm", "bh": "Benjamini–Hochberg"}  # `adjust` methods -> names reports print


@dataclass(frozen=True)
class Comparison:
    """Arm b against arm a. p and df are nan when both arms have zero spread (no t statistic exists)."""

    effect: float  # mean_b − mean_a
    ci: tuple[float, float]
    p: float
    df: float
    n_a: int
    n_b: int
    std_a: float
    std_b: float
    test: str = "welch"  # "paired" (seed-matched differences) or "welch"
    std_diff: float = math.nan  # sample std of the per-seed differences b − a (paired only)


def _check_arm(name: str, std: float, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"arm {name}: n={n!r} — a Welch test needs at least 2 seeds per arm")
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"arm {name}: std={std!r} must be a finite number >= 0")


def welch_df(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
    """Welch–Satterthwaite degrees of freedom (nan when both stds are 0)."""
    va, vb = std_a**2 / n_a, std_b**2 / n_b
    if va + vb == 0:
        return math.nan
    return (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))


def welch_from_stats(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
                     level: float = LEVEL) -> Comparison:
    """Welch comparison from summary statistics (std = sample std, ddof 1), e.g. a thesis cell "28.24 ± 0.0439"."""
    _check_arm("a", std_a, n_a)
    _check_arm("b", std_b, n_b)
    effect = mean_b - mean_a
    se = math.sqrt(std_a**2 / n_a + std_b**2 / n_b)
    df = welch_df(std_a, n_a, std_b, n_b)
    if se == 0:
        return Comparison(effect, (effect, effect), math.nan, math.nan, n_a, n_b, std_a, std_b)
    p = float(stats.ttest_ind_from_stats(mean_b, std_b, n_b, mean_a, std_a, n_a, equal_var=False).pvalue)
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return Comparison(effect, (effect - half, effect + half), p, df, n_a, n_b, std_a, std_b)


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Comparison:
    """Welch comparison of two samples (one value per seed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a Welch test needs at least 2 seeds per arm, got {len(a)} and {len(b)}")
    return welch_from_stats(float(a.mean()), float(a.std(ddof=1)), len(a),
                            float(b.mean()), float(b.std(ddof=1)), len(b), level)


def power(effect: float, std_a: float, std_b: float, n_a: int, n_b: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided Welch test at `alpha` rejects when the true difference is `effect`."""
    se = math.sqrt(std_a**2 / n_a + std_b**2 / n_b)
    if se == 0:
        raise ValueError("power is undefined when both stds are 0")
    df = welch_df(std_a, n_a, std_b, n_b)
    crit, nc = stats.t.isf(alpha / 2, df), abs(effect) / se
    # upper tail + lower tail; the lower as sf(crit, -nc): scipy's nct.cdf returns nan far in that tail
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def mde(std_a: float, std_b: float, n_a: int, n_b: int, target: float = POWER, alpha: float = ALPHA) -> float:
    """Minimum detectable effect: the |difference| a Welch test on these arms detects with power `target`
    (nan when both stds are 0)."""
    _check_arm("a", std_a, n_a)
    _check_arm("b", std_b, n_b)
    if std_a == std_b == 0:
        return math.nan

    def gap(d: float) -> float:
        return power(d, std_a, std_b, n_a, n_b, alpha) - target

    high = math.sqrt(std_a**2 / n_a + std_b**2 / n_b)
    while gap(high) < 0:  # with 2 seeds (df ~ 1) the MDE is many standard errors
        high *= 2
    return float(optimize.brentq(gap, 0.0, high, xtol=1e-12, rtol=1e-10))


def seeds_needed(effect: float, std_a: float, std_b: float, target: float = POWER, alpha: float = ALPHA,
                 method: str = "t") -> int | None:
    """Seeds per arm (equal arms, >= 2) for a Welch test to detect `effect` with power `target`.

    method "t": the smallest n whose noncentral-t power reaches `target`; "normal": the z approximation
    (see the module docstring). None when no n means anything: effect 0 (never detectable) or both stds 0.
    """
    if not all(math.isfinite(v) and v >= 0 for v in (std_a, std_b)):
        raise ValueError(f"stds must be finite and >= 0, got {std_a!r}, {std_b!r}")
    if effect == 0 or not math.isfinite(effect) or std_a == std_b == 0:
        return None
    if method == "normal":
        z = stats.norm.isf(alpha / 2) + stats.norm.ppf(target)
        return max(2, math.ceil(z**2 * (std_a**2 + std_b**2) / effect**2))
    if method != "t":
        raise ValueError(f"method must be 't' or 'normal', got {method!r}")

    def enough(n: int) -> bool:
        return power(effect, std_a, std_b, n, n, alpha) >= target

    low, high = 1, 2  # invariant: enough(high), not enough(low) (n = 1 has no test)
    while not enough(high):
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Comparison:
    """Paired t-test of b − a over the seeds both arms ran ({seed: value}); n_a = n_b = the matched seeds."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"a paired test needs at least 2 seeds in both arms, got {len(seeds)} in common")
    xa = np.array([a[s] for s in seeds], dtype=np.float64)
    xb = np.array([b[s] for s in seeds], dtype=np.float64)
    d, n = xb - xa, len(seeds)
    effect, std_diff = float(d.mean()), float(d.std(ddof=1))
    std_a, std_b = float(xa.std(ddof=1)), float(xb.std(ddof=1))
    if std_diff == 0:  # every seed moved by the same amount: no t statistic
        return Comparison(effect, (effect, effect), math.nan, math.nan, n, n, std_a, std_b, "paired", 0.0)
    se = std_diff / math.sqrt(n)  # p as scipy's ttest_rel computes it, without its precision-loss warning
    p = float(2 * stats.t.sf(abs(effect) / se, n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * se
    return Comparison(effect, (effect - half, effect + half), p, n - 1, n, n, std_a, std_b, "paired", std_diff)


def compare(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Comparison:
    """b against a ({seed: value}): paired over the common seeds when ≥ 2 match, else Welch over all values."""
    if len(set(a) & set(b)) >= 2:
        return paired(a, b, level)
    return welch([a[s] for s in sorted(a)], [b[s] for s in sorted(b)], level)


def paired_power(effect: float, std_diff: float, n: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test over `n` seeds rejects when the true mean difference is `effect`."""
    if not std_diff > 0 or n < 2:
        raise ValueError(f"paired power needs std_diff > 0 and n >= 2, got {std_diff!r}, {n!r}")
    df, nc = n - 1, abs(effect) / (std_diff / math.sqrt(n))
    crit = stats.t.isf(alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def paired_mde(std_diff: float, n: int, target: float = POWER, alpha: float = ALPHA) -> float:
    """The |mean difference| a paired test over `n` seeds detects with power `target` (nan when std_diff is 0)."""
    if not (math.isfinite(std_diff) and std_diff >= 0) or n < 2:
        raise ValueError(f"paired MDE needs a finite std_diff >= 0 and n >= 2, got {std_diff!r}, {n!r}")
    if std_diff == 0:
        return math.nan
    high = std_diff / math.sqrt(n)
    while paired_power(high, std_diff, n, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda e: paired_power(e, std_diff, n, alpha) - target, 0.0, high,
                                 xtol=1e-12, rtol=1e-10))


def paired_seeds_needed(effect: float, std_diff: float, target: float = POWER, alpha: float = ALPHA) -> int | None:
    """Seeds (≥ 2, run in both arms) for a paired test to detect `effect` with power `target`; None when no n
    means anything (effect 0 or std_diff 0)."""
    if not (math.isfinite(std_diff) and std_diff >= 0):
        raise ValueError(f"std_diff must be finite and >= 0, got {std_diff!r}")
    if effect == 0 or not math.isfinite(effect) or std_diff == 0:
        return None
    n = 2
    while paired_power(effect, std_diff, n, alpha) < target:
        n *= 2
    low, high = n // 2, n  # paired_power(high) >= target; low is too few (or 1, no test)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if paired_power(effect, std_diff, mid, alpha) >= target else (mid, high)
    return max(2, high)


def comparison_mde(c: Comparison, target: float = POWER, alpha: float = ALPHA) -> float:
    """The MDE of the test `c` used, at its seeds and spread (paired: the differences')."""
    if c.test == "paired":
        return paired_mde(c.std_diff, c.n_a, target, alpha)
    return mde(c.std_a, c.std_b, c.n_a, c.n_b, target, alpha)


def comparison_seeds_needed(effect: float, c: Comparison, target: float = POWER, alpha: float = ALPHA) -> int | None:
    """Seeds per arm for the test `c` used to detect `effect`, at its spread."""
    if c.test == "paired":
        return paired_seeds_needed(effect, c.std_diff, target, alpha)
    return seeds_needed(effect, c.std_a, c.std_b, target, alpha)


def verdict(comparison: Comparison, expected_sign: int, alpha: float = ALPHA) -> str:
    """reproduced: the effect has the expected sign and p < alpha; contradicted: the opposite sign and p < alpha;
    undecided: otherwise (the seeds cannot tell)."""
    return decide(comparison.effect, comparison.p, expected_sign, alpha)


def decide(effect: float, p: float, expected_sign: int, alpha: float = ALPHA) -> str:
    """`verdict` from an effect and a (possibly multiplicity-adjusted) p."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if not p < alpha:  # also nan
        return UNDECIDED
    return REPRODUCED if math.copysign(1, effect) == expected_sign else CONTRADICTED


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Multiplicity-adjusted p of one family, in input order; nan stays nan and is not counted in m.

    holm: sorted p_(1) ≤ … ≤ p_(m), adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)) (step-down);
    bh: adjusted p_(i) = min_{j ≥ i} min(1, m p_(j) / j) (step-up). Rejecting where adjusted p < α is the
    same decision as running the procedure at α."""
    if method not in CORRECTIONS:
        raise ValueError(f"correction {method!r} is unknown; use one of {', '.join(CORRECTIONS)}")
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    if m == 0:
        return out.tolist()
    ranks = np.arange(1, m + 1)
    if method == "holm":
        out[order] = np.minimum(1.0, np.maximum.accumulate((m - ranks + 1) * p[order]))
    else:
        out[order] = np.minimum(1.0, np.minimum.accumulate((m * p[order] / ranks)[::-1])[::-1])
    return out.tolist()
