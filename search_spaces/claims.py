"""The thesis's claims of §4.4–4.6 as data ("row b beats, trails or does not beat row a on a metric") and their
evaluation over a table's runs (srprior.stats); rendering lives in srprior.report.claims.

A claim names two rows of one table spec (search_spaces/table_4_*.py) and a metric column; `expected_sign` is
the direction the thesis asserts (+1: row b higher, −1: lower); `not_higher` marks "no improvement" (b is not
higher than a: significantly higher contradicts it, significantly lower shows it). Every claim is checked at
import: its table, rows and metric exist. Where the thesis prints both rows' cells, its own numbers can be
tested too and its printed effect sizes the MDE rule; a *direction-only* claim (e.g. DI, which the thesis
only plots in Fig. 4.2) has no thesis effect, so no "underpowered" and no seeds-needed.

`evaluate_claims` turns one table's runs into a verdict per claim:

- the test: seed-paired t-test over the seeds both rows ran (a seed fixes initial weights and patch stream in
  every row), Welch's when fewer than 2 seeds match (srprior.stats.compare); each result says which;
- reproduced / contradicted: adjusted p < 0.05 with the expected / opposite sign — only when the runs are the
  thesis's setting (its preset, its schedule, the claim's own benchmark: `Setting.proxy` is None); otherwise
  "same sign" / "opposite sign" with the proxy named (e.g. "proxy: edsr-t-micro, Embedded PSNR, 2000 steps");
- undecided: adjusted p ≥ 0.05 at the seeds we have — not evidence against the claim; MDE says what could be seen;
- not tested: too few seeds; the columns then show the thesis's own numbers (Welch on its printed cells).

Adjusted p: one table report is one family (its claims share baseline arms and are read together), so its p
are corrected for multiplicity, Holm by default ("bh": Benjamini–Hochberg). Claims tested on our runs form the
family; claims shown on the thesis's numbers form their own. "underpowered": the MDE at these seeds exceeds the
thesis's own printed effect (thesis setting only: a proxy's effect is not the thesis's). "seeds needed" is per
arm, to detect the thesis's printed effect with 80% power at our runs' spread (paired: the differences').
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from srprior import stats
from srprior.search_spaces import get_table

NOT_TESTED = "not tested"
SAME_SIGN, OPPOSITE_SIGN = "same sign", "opposite sign"  # a proxy's verdicts (not the thesis's setting)
PROXY_WORDS = {stats.REPRODUCED: SAME_SIGN, stats.CONTRADICTED: OPPOSITE_SIGN}


@dataclass(frozen=True)
class Claim:
    """Thesis §`section` says: on `metric`, row `row_b` is higher (+1) / lower (−1) than `row_a` (table `table`);
    not_higher: "no improvement" (expected_sign −1)."""

    table: str
    row_a: str
    row_b: str
    metric: str
    expected_sign: int
    section: str
    text: str
    not_higher: bool = False

    def __post_init__(self) -> None:
        where = f"claim §{self.section} ({self.table}: {self.row_b} vs {self.row_a}, {self.metric})"
        try:
            spec = get_table(self.table)
            rows = [spec.row(self.row_a), spec.row(self.row_b)]
        except KeyError as exc:
            raise ValueError(f"{where}: {exc.args[0]}") from None
        if self.metric not in spec.metrics:
            raise ValueError(f"{where}: metric {self.metric!r} is not a column of table {spec.name} "
                             f"({', '.join(spec.metrics)})")
        printed = [self.metric in row.thesis for row in rows]
        if any(printed) and not all(printed):
            raise ValueError(f"{where}: the thesis prints {self.metric} for one row only; give both or neither "
                             "(direction-only)")
        if self.row_a == self.row_b or self.expected_sign not in (1, -1) or not self.text.strip():
            raise ValueError(f"{where}: needs two different rows, expected_sign +1 or -1 and a text")
        if self.not_higher and self.expected_sign != -1:
            raise ValueError(f"{where}: a not_higher claim (\"no improvement\") has expected_sign -1")

    @property
    def key(self) -> str:
        return f"{self.table}:{self.row_b}-vs-{self.row_a}:{self.metric}"

    @property
    def direction_only(self) -> bool:
        """The thesis prints no number for this metric in these rows (e.g. DI, plotted in Fig. 4.2 only)."""
        return self.metric not in get_table(self.table).row(self.row_a).thesis

    @property
    def arrow(self) -> str:
        return "≯" if self.not_higher else "↑" if self.expected_sign > 0 else "↓"

    @property
    def thesis_effect(self) -> float:
        """The thesis's printed mean_b − mean_a (nan: direction-only): what a design powers the claim against."""
        comparison = self.thesis_comparison()
        return comparison.effect if comparison is not None else math.nan

    def thesis_comparison(self) -> stats.Comparison | None:
        """Welch test on the thesis's printed mean ± std, with the seed counts of the table spec (None:
        direction-only)."""
        if self.direction_only:
            return None
        spec = get_table(self.table)
        (ma, sa), (mb, sb) = (spec.row(r).thesis[self.metric] for r in (self.row_a, self.row_b))
        na, nb = (len(spec.row_seeds(spec.row(r))) for r in (self.row_a, self.row_b))
        return stats.welch_from_stats(ma, sa, na, mb, sb, nb)


@dataclass(frozen=True)
class Setting:
    """What the runs behind a report were: the preset each row trained, the schedule (None: the thesis's,
    else a short description such as "2000 steps"), and per claim metric the metric actually measured (a
    stand-in for HardCases); `names` gives metrics their display names."""

    trained: Mapping[str, str] = field(default_factory=dict)  # row id -> preset trained (absent: the spec's)
    schedule: str | None = None
    measured: Mapping[str, str] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)

    def preset(self, claim: Claim, row: str) -> str:
        return self.trained.get(row, get_table(claim.table).row(row).overrides["preset"])

    def measured_on(self, claim: Claim) -> str:
        return self.measured.get(claim.metric, claim.metric)

    def proxy(self, claim: Claim) -> str | None:
        """What makes these runs a proxy for the claim (None: the thesis's own setting)."""
        parts = []
        spec = get_table(claim.table)
        presets = [self.preset(claim, r) for r in (claim.row_a, claim.row_b)]
        if any(p != spec.row(r).overrides["preset"] or p.endswith("-micro")
               for p, r in zip(presets, (claim.row_a, claim.row_b))):
            parts.append(" / ".join(dict.fromkeys(presets)))
        measured = self.measured_on(claim)
        if measured != claim.metric:
            parts.append(self.names.get(measured, measured))
        if self.schedule:
            parts.append(self.schedule)
        return ", ".join(parts) or None


THESIS_SETTING = Setting()


@dataclass(frozen=True)
class ClaimResult:
    """One claim against one table's runs (`source` "runs"), against the thesis's cells ("thesis"), or neither
    ("none": a direction-only claim without runs)."""

    claim: Claim
    verdict: str
    source: str
    effect: float
    ci: tuple[float, float]
    p: float
    n_a: int
    n_b: int
    mde: float  # at n_a, n_b and this spread, 80% power (paired: the differences' spread)
    seeds_needed: int | None  # per arm for the thesis's effect; None: no thesis effect to detect
    thesis_effect: float = math.nan  # the thesis's printed mean_b − mean_a (nan: direction-only)
    p_adj: float = math.nan  # p adjusted over the report's family of claims (`correction`)
    correction: str = "holm"
    family: int = 1  # m: the claims adjusted together
    test: str = "welch"  # "paired" or "welch"
    measured_on: str = ""  # the metric the runs measured for this claim (a stand-in, or the claim's own)
    proxy: str | None = None  # what makes the runs a proxy (None: the thesis's setting)
    control_effect: float = math.nan  # the same comparison on the HardCases-R control tiles (nan: none)
    control_p: float = math.nan

    @property
    def underpowered(self) -> bool:
        """These seeds cannot detect the thesis's own effect with 80% power (MDE > |thesis effect|); only in the
        thesis's setting, for claims with a printed effect to detect."""
        if self.proxy is not None or self.claim.not_higher:
            return False
        return math.isfinite(self.mde) and math.isfinite(self.thesis_effect) and self.mde > abs(self.thesis_effect)

    @property
    def control_difference(self) -> float:
        """Effect on HardCases-R minus effect on its control tiles (what the selection recipe adds)."""
        return self.effect - self.control_effect

    @property
    def verdict_text(self) -> str:
        if self.verdict in (SAME_SIGN, OPPOSITE_SIGN):
            return f"{self.verdict} (proxy: {self.proxy})"
        return {stats.UNDECIDED: f"undecided at {self.n_a}/{self.n_b} seeds",
                NOT_TESTED: "not tested (thesis numbers shown)" if self.source == "thesis" else "not tested"
                }.get(self.verdict, self.verdict)


HC = "psnr_hardcases"
CLAIMS: tuple[Claim, ...] = (
    # §4.4.1, Table 4.2: λ_AP
    Claim("4.2", "edsr-t/baseline", "edsr-t/lambda-1e-4", HC, 1, "4.4.1",
           "EDSR-T: the prior (λ_AP=1e-4) \"significantly improves reconstruction performance … on HardCases\""),
    Claim("4.2", "edsr-t/baseline", "edsr-t/lambda-1e-4", "psnr_set5", 1, "4.4.1",
           "EDSR-T, λ_AP=1e-4: \"consistent improvement almost across all benchmarks\""),
    Claim("4.2", "edsr-t/baseline", "edsr-t/lambda-5e-3", HC, -1, "4.4.1",
           "EDSR-T: \"performance drops significantly when increasing its contribution\" (λ_AP=5e-3)"),
    Claim("4.2", "rcan-t/baseline", "rcan-t/lambda-1e-4", HC, -1, "4.4.1",
           "RCAN-T: \"our attribution prior leads to degraded reconstruction performance\""),
    Claim("4.2", "rnan-t/baseline", "rnan-t/lambda-1e-4", HC, 1, "4.4.1",
           "RNAN-T: \"consistent improvement over RNAN-T baseline, specifically on HardCases\" (λ_AP=1e-4)"),
    Claim("4.2", "rnan-t/baseline", "rnan-t/lambda-1e-5", HC, 1, "4.4.1",
           "RNAN-T: λ_AP=1e-5 \"leads to even stronger improvements over the baseline on HardCases\""),
    Claim("4.2", "rnan-t/baseline", "rnan-t/lambda-1e-3", HC, -1, "4.4.1",
           "RNAN-T: \"worst SR performance across all benchmarks with higher attribution prior contribution\""),
    # §4.4.1, Fig. 4.2: DI (plotted, never printed: direction only)
    Claim("4.2", "edsr-t/baseline", "edsr-t/lambda-5e-3", "di", 1, "4.4.1",
           "EDSR-T, λ_AP=5e-3: \"performance drops significantly when increasing its contribution to the training "
           "objective. On the other hand, we observe a drastic increase in terms of DI scores\""),
    Claim("4.2", "edsr-t/baseline", "edsr-t/lambda-1e-4", "di", 1, "4.4.1",
           "EDSR-T, λ_AP=1e-4: \"Our investigations with EDSR-T show that a slight increase suffices\""),
    Claim("4.2", "rnan-t/baseline", "rnan-t/lambda-1e-4", "di", 1, "4.4.1",
           "RNAN-T, λ_AP=1e-4: \"our attribution prior increases DI scores significantly\""),
    Claim("4.2", "rnan-t/lambda-1e-4", "rnan-t/lambda-1e-3", "di", -1, "4.4.1",
           "RNAN-T, λ_AP=1e-3 vs 1e-4: \"we observe a decreasing DI score and simultaneously achieve worst SR "
           "performance across all benchmarks with higher attribution prior contribution\""),
    # §4.4.2, Table 4.3: w
    Claim("4.3", "edsr-t/baseline", "edsr-t/w-0.1", HC, -1, "4.4.2",
           "EDSR-T, w=0.1: \"lower PSNR on BSD100 and HardCases testset than … the EDSR-T baseline\""),
    Claim("4.3", "rcan-t/baseline", "rcan-t/w-0.1", HC, 1, "4.4.2",
           "RCAN-T, w=0.1: \"outperforms the baseline significantly on HardCases testset\""),
    # §4.5.1, Table 4.4: N_SSR
    Claim("4.4", "edsr-t/n_ssr-1", "edsr-t/n_ssr-2", HC, -1, "4.5.1",
           "N_SSR=2: \"we achieve worst results\" … \"on both EDSR-T and RCAN-T models\" (EDSR-T)"),
    Claim("4.4", "rcan-t/n_ssr-1", "rcan-t/n_ssr-2", HC, -1, "4.5.1",
           "N_SSR=2: \"we achieve worst results\" … \"on both EDSR-T and RCAN-T models\" (RCAN-T)"),
    # "best results when choosing N_SSR = 3 SSRs with arbitrary placing": against the other arbitrary rows,
    # the N_SSR the sentence varies ("Here, we again increase the number of SSRs"), on HardCases (headline set)
    *(Claim("4.4", f"edsr-t/n_ssr-{n}-arbitrary", "edsr-t/n_ssr-3-arbitrary", HC, 1, "4.5.1",
            f"EDSR-T, arbitrary SSRs: \"We achieve our best results when choosing\" … \"SSRs with arbitrary "
            f"placing\" (N_SSR=3 vs {n})") for n in (1, 2)),
    # §4.5.2–4.5.3, Table 4.5: scenarios
    Claim("4.5", "edsr-t/baseline", "edsr-t/scenario-2", HC, 1, "4.5.2",
           "EDSR-T: \"improves significantly when considering a global SSR (Scenario 2) on HardCases\""),
    Claim("4.5", "edsr-t/scenario-1", "edsr-t/scenario-2", HC, 1, "4.5.2",
           "EDSR-T: a global SSR (Scenario 2) beats a local one (Scenario 1): \"limited exploitable "
           "self-similar information in a constraint window\""),
    Claim("4.5", "edsr-t/scenario-1", "edsr-t/scenario-2", "psnr_set5", -1, "4.5.2",
           "EDSR-T: \"Scenario 2 leads to slightly decreasing SR performance on Set5, Set14 and BSD100\""),
    Claim("4.5", "rnan-t/scenario-1", "rnan-t/scenario-2", HC, 1, "4.5.2",
           "RNAN-T: \"Scenario 2 outperforms results obtained from locally constraint SSRs consistently\""),
    Claim("4.5", "edsr-t/scenario-1", "edsr-t/scenario-3", HC, -1, "4.5.3",
           "EDSR-T: \"decreasing reconstruction performance on HardCases … when selecting a random local "
           "region\""),
    Claim("4.5", "rnan-t/scenario-2", "rnan-t/scenario-3", HC, 1, "4.5.3",
           "RNAN-T: \"strong results on HardCases\" with a random region (Scenario 3) \"instead of regions "
           "selected based on self-similarity\""),
    # §4.5.4, Table 4.6: standard regularizers
    Claim("4.6", "edsr-t/baseline", "edsr-t/bn", "psnr_set5", -1, "4.5.4",
           "\"drastic decline in SR performance on standard evaluation benchmarks when adding BN\""),
    Claim("4.6", "edsr-t/baseline", "edsr-t/weight-decay-1e-4", HC, -1, "4.5.4",
           "Weight decay: not higher on HardCases (\"we evaluate on HardCases testset but see no improvement "
           "either. Same holds when\" … \"adding weight decay\")", not_higher=True),
    Claim("4.6", "edsr-t/baseline", "edsr-t/resblocks-15", HC, -1, "4.5.4",
           "One residual block fewer: not higher on HardCases (\"see no improvement either. Same holds when we "
           "regularize EDSR-T by removing the last residual block\")", not_higher=True),
    # §4.5.5, Table 4.7: PSNR on SSRs and PoIs of HardCases
    Claim("4.7", "edsr-t/baseline", "edsr-t/lambda-1e-4", "psnr_ssr", 1, "4.5.5",
           "EDSR-T on SSRs: \"We outperform the baseline method consistently by a large margin\""),
    Claim("4.7", "edsr-t/baseline", "edsr-t/lambda-1e-4", "psnr_poi", 1, "4.5.5",
           "EDSR-T: \"our attribution prior enhances … PSNR of PoIs significantly\""),
    Claim("4.7", "rnan-t/baseline", "rnan-t/lambda-1e-4", "psnr_poi", 1, "4.5.5",
           "RNAN-T: \"our attribution prior enhances … PSNR of PoIs significantly\""),
    # §4.6, Table 4.8: EDSR-B
    Claim("4.8", "edsr-b/baseline", "edsr-b/lambda-1e-4", HC, 1, "4.6",
           "EDSR-B: the prior \"leads to better SR performance on HardCases testset, Urban100 and BSD100\""),
    Claim("4.8", "edsr-b/baseline", "edsr-b/lambda-1e-4", "psnr_set14", -1, "4.6",
           "EDSR-B: \"moderately lower on Set14 in terms of PSNR compared to the retrained baseline\""),
)

CLAIMS_BY_TABLE: dict[str, tuple[Claim, ...]] = {
    name: tuple(c for c in CLAIMS if c.table == name) for name in dict.fromkeys(c.table for c in CLAIMS)
}

_dupes = sorted({c.key for c in CLAIMS if [d.key for d in CLAIMS].count(c.key) > 1})
if _dupes:
    raise ValueError(f"search_spaces/claims.py: duplicate claim(s) {_dupes}")


def _by_seed(runs: Mapping[int, Mapping[str, float]], metric: str) -> dict[int, float]:
    return {seed: runs[seed][metric] for seed in sorted(runs) if metric in runs[seed]}


def _testable(a: Mapping[int, float], b: Mapping[int, float]) -> bool:
    return len(set(a) & set(b)) >= 2 or (len(a) >= 2 and len(b) >= 2)


def evaluate_claim(claim: Claim, values: Mapping[str, Mapping[int, Mapping[str, float]]],
                   setting: Setting = THESIS_SETTING, control: Mapping[str, str] | None = None) -> ClaimResult:
    """`claim` against `values` = {row_id: {seed: {metric: value}}} of the claim's table (report.collect), the
    runs being `setting`; `control`: claim metric -> the metric of its control tiles (HardCases-R's), compared
    the same way."""
    a, b = (_by_seed(values.get(row, {}), claim.metric) for row in (claim.row_a, claim.row_b))
    thesis = claim.thesis_comparison()
    if not _testable(a, b):  # the thesis's own cells (or nothing) are shown: its setting, no proxy
        setting = THESIS_SETTING
    proxy = setting.proxy(claim)
    thesis_effect = thesis.effect if thesis is not None else math.nan
    hypothesis = math.nan if proxy is not None or claim.not_higher else thesis_effect
    where = {"measured_on": setting.measured_on(claim), "proxy": proxy, "thesis_effect": thesis_effect}
    if _testable(a, b):
        comp, source = stats.compare(a, b), "runs"
        verdict = verdict_word(stats.verdict(comp, claim.expected_sign), proxy)
    elif thesis is not None:
        comp, source, verdict = thesis, "thesis", NOT_TESTED
    else:
        return ClaimResult(claim, NOT_TESTED, "none", math.nan, (math.nan, math.nan), math.nan, len(a), len(b),
                           math.nan, None, family=0, **where)
    ctrl = {}
    if (control or {}).get(claim.metric) and source == "runs":
        ca, cb = (_by_seed(values.get(row, {}), control[claim.metric]) for row in (claim.row_a, claim.row_b))
        if _testable(ca, cb):
            c = stats.compare(ca, cb)
            ctrl = {"control_effect": c.effect, "control_p": c.p}
    return ClaimResult(claim, verdict, source, comp.effect, comp.ci, comp.p, comp.n_a, comp.n_b,
                       stats.comparison_mde(comp),
                       stats.comparison_seeds_needed(hypothesis, comp) if math.isfinite(hypothesis) else None,
                       p_adj=comp.p, family=0 if math.isnan(comp.p) else 1, test=comp.test, **where, **ctrl)


def verdict_word(verdict: str, proxy: str | None) -> str:
    """The thesis's words in its own setting; "same sign" / "opposite sign" for a proxy."""
    return PROXY_WORDS.get(verdict, verdict) if proxy is not None else verdict


def evaluate_claims(claims: Iterable[Claim], values: Mapping[str, Mapping[int, Mapping[str, float]]],
                    correction: str = "holm", setting: Setting = THESIS_SETTING,
                    control: Mapping[str, str] | None = None) -> tuple[ClaimResult, ...]:
    """Every claim against one table's runs, p adjusted by `correction` over the claims tested on our runs (and,
    apart, over those shown on the thesis's numbers); verdicts on the adjusted p. Pass CLAIMS_BY_TABLE[table]
    (row ids repeat across tables)."""
    results = [evaluate_claim(claim, values, setting, control) for claim in claims]
    for source in ("runs", "thesis"):
        idx = [i for i, r in enumerate(results) if r.source == source]
        adjusted = stats.adjust([results[i].p for i in idx], correction)
        m = sum(not math.isnan(results[i].p) for i in idx)
        for i, p_adj in zip(idx, adjusted):
            r = results[i]
            verdict = r.verdict if source == "thesis" else \
                verdict_word(stats.decide(r.effect, p_adj, r.claim.expected_sign), r.proxy)
            results[i] = replace(r, p_adj=p_adj, verdict=verdict, correction=correction, family=m)
    return tuple(results)
