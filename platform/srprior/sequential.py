"""A pre-registered group-sequential design over seeds: decide each claim of a table with as few seeds as it needs.

Why: at fixed seed counts most of the thesis's claims stay undecided (its effects are the size of its seed
noise), while seeds of rows no claim names, and of claims already decided, buy nothing. So a sweep trains a
pilot of seeds for every row, then looks at planned seed counts (`Design.looks`, printed before training, the
last one the cap per row) and gives new seeds only to the rows of claims still undecided.

At a look each undecided claim's paired t-test (b − a over seed-matched values, two-sided) is checked against
an alpha-spending boundary:

- Spending: Lan & DeMets (1983) with the O'Brien–Fleming-type function α(t) = 2 − 2Φ(z_{1−α/2}/√t) at the
  information fraction t = n / cap (n: the claim's pairs at the look; the cap spends what is left). The nominal
  p threshold of each look is calibrated on the paired t test's own null process (simulated once per look
  schedule: under no effect it does not depend on the spread), so each look spends exactly α(t_k) − α(t_{k−1})
  of the t test's crossing probability. Normal-theory boundaries used as nominal p (Jennison & Turnbull 2000
  §3.8) would not: with a pilot of 2–3 seeds (1–2 df) they gave 0.0535 for 0.05 at looks 2-3-4-6-8 (one claim,
  40,000 simulated families, measured while building this module).
- Multiplicity: the group-sequential Holm procedure (Ye, Li, Liu & Yao 2013, Stat Med 32:1112–1124): at each
  look, with r claims of the family not yet rejected, a claim is rejected when its p is below its boundary at
  level α/r; every rejection lowers r and the look is tested again (step-down within a look). Closed testing
  with Bonferroni-split group-sequential intersection tests: the family-wise error is ≤ α under any dependence
  (the claims of a table share baseline rows), because the boundaries grow with their level (consonance; a test
  checks it).
- Futility (non-binding: the boundaries ignore it, so stopping never raises the error): after a look, a claim
  whose conditional power at the cap, under the thesis's printed effect with the spread of its own differences
  (Brownian-motion approximation, Lan & Wittes 1988), is below `Design.futility` gets no more seeds and stays
  undecided. A claim without a printed effect never stops for futility.
- Verdicts: "reproduced" (expected sign), "contradicted" (opposite sign), or undecided at the cap; each says at
  which look and why (boundary, futility, cap).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from srprior.stats import ALPHA, CONTRADICTED, REPRODUCED, UNDECIDED

BOUNDARY, FUTILITY, CAP = "boundary", "futility", "cap"  # why a claim's look decided it
WHY = {BOUNDARY: "crossed its boundary", FUTILITY: "stopped for futility", CAP: "reached its cap"}


@dataclass(frozen=True)
class Design:
    """Seeds per row at each look: looks[0] the pilot (every row), looks[-1] the cap."""

    looks: tuple[int, ...]
    alpha: float = ALPHA
    futility: float = 0.1  # conditional power at the cap below which a claim stops

    def __post_init__(self) -> None:
        looks = tuple(self.looks)
        if len(looks) < 1 or looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:])):
            raise ValueError(f"looks {looks!r}: increasing seed counts per row, the pilot >= 2 (a paired t test)")
        if not (0 < self.alpha < 1 and 0 <= self.futility < 1):
            raise ValueError(f"alpha {self.alpha!r} in (0, 1) and futility {self.futility!r} in [0, 1)")
        object.__setattr__(self, "looks", looks)

    def claim_looks(self, cap: int) -> tuple[int, ...]:
        """The looks of a claim capped at `cap` seeds per row (a cap between two looks is a look)."""
        return tuple(n for n in self.looks if n < cap) + (min(cap, self.cap),)

    @property
    def pilot(self) -> int:
        return self.looks[0]

    @property
    def cap(self) -> int:
        return self.looks[-1]

    def text(self) -> str:
        futility = f"futility below {self.futility:.0%} conditional power" if self.futility else "no futility stop"
        return (f"pilot {self.pilot} seeds per row, looks at {', '.join(map(str, self.looks))} seeds, cap "
                f"{self.cap}; O'Brien–Fleming spending, group-sequential Holm at α = {self.alpha:g}, {futility}")


def spent(t: float, alpha: float) -> float:
    """Lan–DeMets O'Brien–Fleming-type two-sided spending function: α spent by information fraction t."""
    if t >= 1:
        return alpha
    return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(t))) if t > 0 else 0.0


PATHS = 500_000  # simulated null paths that calibrate the boundaries (an increment of 0.005 rests on ~2,500)


@functools.lru_cache(maxsize=4)  # 500,000 × looks p values each (≤ 20 MB)
def _null_p(ns: tuple[int, ...]) -> np.ndarray:
    """[path, look] two-sided paired-t p at looks with `ns` pairs, on PATHS null paths (a fixed stream: the
    boundaries are pre-registered, the same on every machine). Under no effect this process depends on `ns`
    only (the t statistic ignores the spread), so it calibrates every claim at once."""
    rng = np.random.default_rng(20131112)  # Ye et al.'s issue date: any fixed number would do
    d = rng.standard_normal((PATHS, ns[-1]), dtype=np.float32).astype(np.float64)
    sums, squares = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
    return np.stack([paired_t(sums[:, n - 1], squares[:, n - 1], n)[2] for n in ns], axis=1)


@functools.lru_cache(maxsize=4096)
def _nominal(ns: tuple[int, ...], cap: int, alpha: float) -> tuple[float, ...]:
    p, alive, out = _null_p(ns), np.ones(PATHS, bool), []
    for k, n in enumerate(ns):
        spend = spent(n / cap, alpha) - (spent(ns[k - 1] / cap, alpha) if k else 0.0)
        if k == 0:  # the first look's p is exactly uniform: no simulation needed
            c = spend
        else:
            count = int(round(spend * PATHS))
            c = float(np.partition(p[alive, k], count)[count]) if count else 0.0
        out.append(c)
        alive &= p[:, k] >= c
    return tuple(out)


def nominal_p(ns: Sequence[int], cap: int, alpha: float) -> tuple[float, ...]:
    """Nominal two-sided p thresholds of the paired t test at looks with `ns` pairs (a look rejects when
    p < threshold): each look spends α(n / cap) − α(previous) of the t test's own null crossing probability, so
    small df (a pilot of 2–3 seeds) cannot inflate the error; a look at n >= cap spends what is left."""
    ns = tuple(int(n) for n in ns)
    if not ns or ns[0] < 2 or any(b <= a for a, b in zip(ns, ns[1:])):
        raise ValueError(f"looks {ns!r}: increasing pair counts >= 2")
    return _nominal(ns, int(cap), float(alpha))


def thresholds(ns: Sequence[int], cap: int, alpha: float, m: int) -> np.ndarray:
    """[look, r − 1] -> nominal p threshold at level α/r, for r = 1..m claims not yet rejected (Holm)."""
    return np.array([nominal_p(ns, cap, alpha / r) for r in range(1, m + 1)]).T


def holm_look(p: np.ndarray, tested: np.ndarray, rejected: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """One look of the group-sequential Holm procedure over families (rows of `p`): the claims newly rejected.

    p, tested, rejected: [family, claim]; levels[claim, r − 1]: the claim's threshold at this look at α/r. Step-down: reject every
    tested claim below the threshold for the r claims not yet rejected, recount r, repeat until none is added
    (the same as Holm's one-at-a-time order, since thresholds grow as r falls)."""
    m = p.shape[1]
    new = np.zeros_like(tested)
    for _ in range(m):
        r = m - (rejected | new).sum(axis=1)
        limit = levels[np.arange(m)[None, :], np.clip(r, 1, m)[:, None] - 1]
        more = tested & ~rejected & ~new & (p < limit)
        if not more.any():
            break
        new |= more
    return new


def conditional_power(z: np.ndarray, t: np.ndarray | float, drift: np.ndarray,
                      bound: np.ndarray | float) -> np.ndarray:
    """P(|Z at the cap| >= bound | Z = z at information fraction t), when the cap's expected Z is `drift`
    (Brownian motion B(t) = Z√t with mean drift·t: Lan & Wittes 1988)."""
    t = np.minimum(t, 1 - 1e-12)
    mean, sd = z * np.sqrt(t) + drift * (1 - t), np.sqrt(1 - t)
    return stats.norm.sf((bound - mean) / sd) + stats.norm.cdf((-bound - mean) / sd)


def paired_t(sums: np.ndarray, squares: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sample std and two-sided p of the paired t test from running sums of n differences (vectorised
    scipy.stats.ttest_rel: the same statistic on differences b − a)."""
    mean = sums / n
    sd = np.sqrt(np.maximum(squares - n * mean**2, 0.0) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    return mean, sd, 2 * stats.t.sf(np.abs(t), n - 1)


@dataclass(frozen=True)
class Simulated:
    """Per family and claim: sign of the verdict (+1 the expected sign, −1 the opposite, 0 undecided), the look
    that ended the claim, why (0 boundary, 1 futility, 2 cap), and the pairs (seeds per row) it used."""

    sign: np.ndarray
    look: np.ndarray
    reason: np.ndarray
    seeds: np.ndarray


def claim_levels(design: Design, caps: Sequence[int], spending: bool = True) -> np.ndarray:
    """[look, claim, r − 1] -> nominal p threshold at α/r (nan after the claim's cap). Each claim looks at the
    design's seed counts up to its own cap (a cheap claim may look further than an expensive one)."""
    m, out = len(caps), np.full((len(design.looks), len(caps), len(caps)), np.nan)
    for j, cap in enumerate(caps):
        looks = design.claim_looks(cap)
        out[:len(looks), j] = (thresholds(looks, cap, design.alpha, m) if spending else
                               np.tile(design.alpha / np.arange(1, m + 1), (len(looks), 1)))
    return out


def simulate(design: Design, effects: Sequence[float], thesis: Sequence[float], families: int, seed: int = 0,
             caps: Sequence[int] | None = None, spending: bool = True) -> Simulated:
    """The design on `families` synthetic families of paired differences d ~ N(effect, 1) per claim: effects and
    the thesis's effects in units of the claims' paired spread, + the claim's expected sign (thesis nan: no
    futility stop); caps: each claim's cap (default the design's). `spending=False` replaces the boundaries by
    α/r at every look (the naive repeated test the boundaries exist to prevent)."""
    effects, thesis = np.asarray(effects, float), np.asarray(thesis, float)
    m, rng = len(effects), np.random.default_rng(seed)
    caps = np.array(caps if caps is not None else [design.cap] * m)
    d = rng.standard_normal((families, m, int(caps.max()))) + effects[None, :, None]
    sums, squares = np.cumsum(d, axis=2), np.cumsum(d * d, axis=2)
    levels = claim_levels(design, caps, spending)
    last = np.array([len(design.claim_looks(c)) - 1 for c in caps])
    sign, look = np.zeros((families, m), int), np.broadcast_to(last, (families, m)).copy()
    reason, done = np.full((families, m), 2), np.zeros((families, m), bool)
    for k, n in enumerate(design.looks):
        live = last >= k
        if not live.any():
            break
        mean, sd, p = paired_t(sums[:, live, n - 1], squares[:, live, n - 1], n)
        p_all, mean_all, sd_all = (np.ones((families, m)), np.zeros((families, m)), np.ones((families, m)))
        p_all[:, live], mean_all[:, live], sd_all[:, live] = np.nan_to_num(p, nan=1.0), mean, sd
        new = holm_look(p_all, ~done & live, sign != 0, np.nan_to_num(levels[k], nan=-1.0))
        sign[new], look[new], reason[new] = np.where(mean_all[new] > 0, 1, -1), k, 0
        done |= new
        going = ~done & (last > k)[None, :]
        if design.futility > 0 and going.any():
            r = np.clip(m - (sign != 0).sum(axis=1), 1, m)
            final = levels[last, np.arange(m)][:, r - 1].T  # [family, claim]: the cap's threshold at α/r
            with np.errstate(divide="ignore", invalid="ignore"):
                drift = thesis[None, :] / sd_all * np.sqrt(caps)[None, :]
            cp = conditional_power(np.copysign(stats.norm.isf(p_all / 2), mean_all), n / caps[None, :], drift,
                                   stats.norm.isf(final / 2))
            stop = going & np.isfinite(drift) & (cp < design.futility)
            look[stop], reason[stop] = k, 1
            done |= stop
    return Simulated(sign, look, reason, np.asarray(design.looks)[look])


def simulate_fixed(effects: Sequence[float], ns: Sequence[int], families: int, seed: int = 0,
                   alpha: float = ALPHA) -> np.ndarray:
    """The fixed design on the same model: one paired t test per claim at its rows' `ns` seeds, Holm at α; the
    sign of each verdict [family, claim] as in `simulate`."""
    effects, m, rng = np.asarray(effects, float), len(ns), np.random.default_rng(seed)
    p, mean = np.ones((families, m)), np.zeros((families, m))
    for j, n in enumerate(ns):
        d = rng.standard_normal((families, n)) + effects[j]
        mean[:, j], _, p[:, j] = paired_t(d.sum(axis=1), (d * d).sum(axis=1), n)
    levels = np.tile(alpha / np.arange(1, m + 1), (m, 1))
    new = holm_look(np.nan_to_num(p, nan=1.0), np.ones((families, m), bool), np.zeros((families, m), bool), levels)
    return np.where(new, np.where(mean > 0, 1, -1), 0)


@dataclass(frozen=True)
class Decision:
    """One claim after the looks so far: its verdict, the look (1-based) that ended it and why (None: still
    undecided and looking), its last paired test (pairs, effect b − a, p) and the threshold that p faced."""

    verdict: str
    look: int | None
    reason: str | None
    n: int
    effect: float
    p: float
    threshold: float
    proxy: str | None = None  # what makes the runs a proxy for the claim (None: the thesis's setting)

    @property
    def active(self) -> bool:
        return self.reason is None

    def text(self) -> str:
        when = f" at look {self.look} ({WHY[self.reason]})" if self.reason else " (still looking)"
        proxy = f" (proxy: {self.proxy})" if self.proxy else ""
        return (f"{self.verdict}{when}: paired t over {self.n} seeds, effect {self.effect:+.4g}, p {self.p:.3g} "
                f"vs boundary {self.threshold:.3g}{proxy}")


def decide(design: Design, caps: Sequence[int], signs: Sequence[int], thesis: Sequence[float],
           diffs: Sequence[Sequence[np.ndarray]]) -> list[Decision]:
    """Replay the design over real data: diffs[j][k] are claim j's seed-matched differences b − a at look k
    (its rows' first looks[k] seeds; fewer when trials failed), for the looks run so far; signs: the claims'
    expected signs; thesis: their printed effects b − a (nan: none). Deterministic, so a resumed sweep reaches
    the same decisions. Each look's boundary is computed for the pairs the claim actually had (Lan–DeMets)."""
    m = len(caps)
    out: list[Decision | None] = [None] * m
    last: dict[int, Decision] = {}
    history: list[list[int]] = [[] for _ in range(m)]
    for k in range(max((len(d) for d in diffs), default=0)):
        stats_k: dict[int, tuple[int, float, float, float]] = {}
        for j in range(m):
            if out[j] is None and k < len(diffs[j]) and len(diffs[j][k]) >= 2 and k < len(design.claim_looks(caps[j])):
                d = np.asarray(diffs[j][k], float)
                n = len(d)
                if history[j] and n <= history[j][-1]:
                    continue  # no new pairs (failed trials): not a look for this claim
                history[j].append(n)
                mean, sd, p = paired_t(np.array(d.sum()), np.array((d * d).sum()), n)
                stats_k[j] = (n, float(mean), float(sd), float(np.nan_to_num(p, nan=1.0)))
        final = {j: k == len(design.claim_looks(caps[j])) - 1 for j in stats_k}
        rejected = {j for j, o in enumerate(out) if o is not None and o.reason == BOUNDARY}
        for _ in range(m):  # Holm step-down within the look
            r = max(1, m - len(rejected))
            new = [j for j, (n, mean, _, p) in stats_k.items() if j not in rejected
                   and p < _threshold(history[j], caps[j], final[j], design.alpha / r)]
            if not new:
                break
            for j in new:
                n, mean, _, p = stats_k[j]
                verdict = REPRODUCED if math.copysign(1, mean) == signs[j] else CONTRADICTED
                out[j] = Decision(verdict, k + 1, BOUNDARY, n, mean, p,
                                  _threshold(history[j], caps[j], final[j], design.alpha / r))
                rejected.add(j)
        r = max(1, m - len(rejected))
        for j, (n, mean, sd, p) in stats_k.items():
            if out[j] is not None:
                continue
            level = _threshold(history[j], caps[j], final[j], design.alpha / r)
            last[j] = Decision(UNDECIDED, None, None, n, mean, p, level)
            if final[j]:
                out[j] = Decision(UNDECIDED, k + 1, CAP, n, mean, p, level)
            elif design.futility > 0 and math.isfinite(thesis[j]) and sd > 0:
                bound = float(stats.norm.isf(nominal_p(design.claim_looks(caps[j]), caps[j], design.alpha / r)[-1] / 2))
                z = math.copysign(float(stats.norm.isf(p / 2)), mean)
                cp = float(conditional_power(np.array(z), n / caps[j], np.array(thesis[j] / sd * math.sqrt(caps[j])),
                                             bound))
                if cp < design.futility:
                    out[j] = Decision(UNDECIDED, k + 1, FUTILITY, n, mean, p, level)
    return [o or last.get(j, Decision(UNDECIDED, None, None, 0, math.nan, math.nan, math.nan))
            for j, o in enumerate(out)]


def _threshold(history: Sequence[int], cap: int, final: bool, alpha: float) -> float:
    """The nominal p threshold of a claim's latest look, over the pairs it had at each of its looks."""
    return nominal_p(history, history[-1] if final else cap, alpha)[-1]
