"""The thesis's claims of §4.4–4.6 as data: "row b beats (or trails) row a on a metric", each a Welch test.

A claim names two rows of one table spec (search_spaces/table_4_*.py) and a metric column; `expected_sign` is
the direction the thesis asserts (+1: row b higher, −1: lower). Every claim is checked at import: its table,
rows and metric exist and both rows carry the thesis's printed cell, so the thesis's own numbers can always be
tested too. `evaluate_claims` turns one table's runs into a verdict per claim (srprior.stats):

- reproduced / contradicted: our seeds give adjusted p < 0.05 with the expected / opposite sign;
- undecided: adjusted p ≥ 0.05 at the seeds we have — not evidence against the claim; MDE says what could be seen;
- not tested: fewer than 2 seeds in an arm; the columns then show the thesis's own numbers.

Adjusted p: one table report is one family (its claims share baseline arms and are read together), so its p
are corrected for multiplicity, Holm by default (family-wise error ≤ 0.05 under any dependence; "bh":
Benjamini–Hochberg). Claims tested on our runs form the family; claims shown on the thesis's numbers form their
own (they are the thesis's tests, not ours). A claim alone (`evaluate_claim`) is a family of one.
"underpowered": the MDE at these seeds exceeds the thesis's own printed effect, so an undecided verdict there is
expected whether or not the claim holds. "seeds needed" is per arm, to detect the thesis's printed effect (the
claim's hypothesis, not our noisy estimate) with 80% power, from the spread of our runs (or of the thesis's cells
when not tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from srprior import stats
from srprior.search_spaces import get_table

NOT_TESTED = "not tested"
SHORT = {"holm": "Holm", "bh": "BH"}  # column names of the adjusted p (srprior.stats.CORRECTIONS)


def markdown_header(correction: str = "holm") -> str:
    """The claims table's header for p adjusted by `correction`."""
    heads = ["§", "Claim", "Table", "b vs a", "Metric", "Expected", "Effect [95% CI]", "p (raw)",
             f"p ({SHORT[correction]})", "n (a/b)", "MDE", "Seeds/arm needed", "Verdict"]
    return "| " + " | ".join(heads) + " |\n|" + "---|" * len(heads)


MARKDOWN_HEADER = markdown_header()


@dataclass(frozen=True)
class Claim:
    """Thesis §`section` says: on `metric`, row `row_b` is higher (+1) / lower (−1) than `row_a` (table `table`)."""

    table: str
    row_a: str
    row_b: str
    metric: str
    expected_sign: int
    section: str
    text: str

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
        missing = [row.id for row in rows if self.metric not in row.thesis]
        if missing:
            raise ValueError(f"{where}: no thesis number for {self.metric} in row(s) {missing}")
        if self.row_a == self.row_b or self.expected_sign not in (1, -1) or not self.text.strip():
            raise ValueError(f"{where}: needs two different rows, expected_sign +1 or -1 and a text")

    @property
    def key(self) -> str:
        return f"{self.table}:{self.row_b}-vs-{self.row_a}:{self.metric}"

    def thesis_comparison(self) -> stats.Comparison:
        """Welch test on the thesis's printed mean ± std, with the seed counts of the table spec."""
        spec = get_table(self.table)
        (ma, sa), (mb, sb) = (spec.row(r).thesis[self.metric] for r in (self.row_a, self.row_b))
        na, nb = (len(spec.row_seeds(spec.row(r))) for r in (self.row_a, self.row_b))
        return stats.welch_from_stats(ma, sa, na, mb, sb, nb)


@dataclass(frozen=True)
class ClaimResult:
    """One claim against one table's runs (`source` "runs"), or against the thesis's cells ("thesis")."""

    claim: Claim
    verdict: str
    source: str
    effect: float
    ci: tuple[float, float]
    p: float
    n_a: int
    n_b: int
    mde: float  # at n_a, n_b and this spread, 80% power
    seeds_needed: int | None  # per arm for the thesis's effect; None: the thesis prints no difference
    thesis_effect: float = math.nan  # the thesis's printed mean_b − mean_a
    p_adj: float = math.nan  # p adjusted over the report's family of claims (`correction`)
    correction: str = "holm"
    family: int = 1  # m: the claims adjusted together

    @property
    def underpowered(self) -> bool:
        """These seeds cannot detect the thesis's own effect with 80% power (MDE > |thesis effect|)."""
        return math.isfinite(self.mde) and self.mde > abs(self.thesis_effect)

    @property
    def verdict_text(self) -> str:
        return {stats.UNDECIDED: f"undecided at {self.n_a}/{self.n_b} seeds",
                NOT_TESTED: "not tested (thesis numbers shown)"}.get(self.verdict, self.verdict)

    def mde_text(self) -> str:
        """The MDE, with the underpowered mark beside it."""
        d = 4 if self.claim.metric.startswith("ssim") else 3
        text = "—" if math.isnan(self.mde) else f"{self.mde:.{d}f}"
        return f"{text} underpowered (thesis effect {self.thesis_effect:+.{d}f})" if self.underpowered else text

    def to_markdown_row(self) -> str:
        c, d = self.claim, 4 if self.claim.metric.startswith("ssim") else 3
        thesis = " (thesis)" if self.source == "thesis" else ""
        cells = [c.section, c.text, c.table, f"`{c.row_b}` vs `{c.row_a}`", c.metric,
                 "↑" if c.expected_sign > 0 else "↓",
                 f"{self.effect:+.{d}f} [{self.ci[0]:+.{d}f}, {self.ci[1]:+.{d}f}]{thesis}",
                 *("—" if math.isnan(p) else f"{p:.3g}" for p in (self.p, self.p_adj)), f"{self.n_a}/{self.n_b}",
                 self.mde_text(), "∞" if self.seeds_needed is None else str(self.seeds_needed),
                 f"**{self.verdict_text}**"]
        return "| " + " | ".join(cells) + " |"


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
    Claim("4.4", "edsr-t/n_ssr-1", "edsr-t/n_ssr-3-arbitrary", "psnr_set5", 1, "4.5.1",
           "EDSR-T, N_SSR=3: \"our best results when choosing\" … \"SSRs with arbitrary placing\""),
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
           "Weight decay: no improvement on HardCases (\"Same holds … adding weight decay\")"),
    Claim("4.6", "edsr-t/baseline", "edsr-t/resblocks-15", HC, -1, "4.5.4",
           "One residual block fewer: no improvement on HardCases (\"removing the last residual block\")"),
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


def _values(runs: Mapping[int, Mapping[str, float]], metric: str) -> list[float]:
    return [runs[seed][metric] for seed in sorted(runs) if metric in runs[seed]]


def evaluate_claim(claim: Claim, values: Mapping[str, Mapping[int, Mapping[str, float]]]) -> ClaimResult:
    """`claim` against `values` = {row_id: {seed: {metric: value}}} of the claim's table (report.collect)."""
    a, b = (_values(values.get(row, {}), claim.metric) for row in (claim.row_a, claim.row_b))
    thesis = claim.thesis_comparison()
    if len(a) >= 2 and len(b) >= 2:
        comp, source = stats.welch(a, b), "runs"
        verdict = stats.verdict(comp, claim.expected_sign)
    else:
        comp, source, verdict = thesis, "thesis", NOT_TESTED
    return ClaimResult(claim, verdict, source, comp.effect, comp.ci, comp.p, comp.n_a, comp.n_b,
                       stats.mde(comp.std_a, comp.std_b, comp.n_a, comp.n_b),
                       stats.seeds_needed(thesis.effect, comp.std_a, comp.std_b), thesis.effect,
                       p_adj=comp.p, family=0 if math.isnan(comp.p) else 1)


def evaluate_claims(claims: Iterable[Claim], values: Mapping[str, Mapping[int, Mapping[str, float]]],
                    correction: str = "holm") -> tuple[ClaimResult, ...]:
    """Every claim against one table's runs, p adjusted by `correction` over the claims tested on our runs (and,
    apart, over those shown on the thesis's numbers); verdicts on the adjusted p. Pass CLAIMS_BY_TABLE[table]
    (row ids repeat across tables)."""
    results = [evaluate_claim(claim, values) for claim in claims]
    for source in ("runs", "thesis"):
        idx = [i for i, r in enumerate(results) if r.source == source]
        adjusted = stats.adjust([results[i].p for i in idx], correction)
        m = sum(not math.isnan(results[i].p) for i in idx)
        for i, p_adj in zip(idx, adjusted):
            r = results[i]
            verdict = r.verdict if source == "thesis" else stats.decide(r.effect, p_adj, r.claim.expected_sign)
            results[i] = replace(r, p_adj=p_adj, verdict=verdict, correction=correction, family=m)
    return tuple(results)


def to_markdown(results: Iterable[ClaimResult], correction: str = "holm") -> str:
    """The claims table: markdown_header(correction) plus one row per result."""
    return "\n".join([markdown_header(correction), *(r.to_markdown_row() for r in results)]) + "\n"


def to_terminal(results: Iterable[ClaimResult], width: int = 120) -> list[str]:
    """One line per claim (≤ `width` columns): verdict, rows, metric (PSNR unless named), effect, raw and
    adjusted p, MDE with the underpowered mark."""
    lines = []
    for r in results:
        c = r.claim
        group, _, a = c.row_a.partition("/")
        b = c.row_b.removeprefix(group + "/")
        ps = "p —" if math.isnan(r.p) else f"p {r.p:.2g} {SHORT[r.correction]} {r.p_adj:.2g}"
        mde = "" if math.isnan(r.mde) else f" MDE {r.mde:.3g}" + (" UNDERPOWERED" if r.underpowered else "")
        source = " thesis" if r.source == "thesis" else ""  # the thesis's numbers: not tested on runs
        metric = c.metric.removeprefix("psnr_")
        line = (f"  {r.verdict:<10} §{c.section} {group} {b} vs {a} {metric}{'↑' if c.expected_sign > 0 else '↓'} "
                f"{r.effect:+.3f}{source} {ps}{mde}")
        lines.append(line if len(line) <= width else line[:width - 1] + "…")
    return lines

