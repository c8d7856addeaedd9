"""The thesis's claims as text: the Markdown table (also the HTML's source) and the terminal lines, from the
results of srprior.search_spaces.claims.evaluate_claims. Every line names its test (paired or Welch), the
metric actually measured and, for a proxy, what it is a proxy of; a claim scored on HardCases-R shows its
effect on the control tiles and the difference."""

from __future__ import annotations

import math
from collections.abc import Iterable

from srprior.search_spaces.claims import ClaimResult

SHORT = {"holm": "Holm", "bh": "BH"}  # column names of the adjusted p (srprior.stats.CORRECTIONS)
CONTROL_HEADS = ("Effect on control", "HardCases-R − control")


def markdown_header(correction: str = "holm", control: bool = False) -> str:
    """The claims table's header for p adjusted by `correction` (with the control columns when `control`)."""
    heads = ["§", "Claim", "Table", "b vs a", "Metric", "Measured on", "Expected", "Test", "Effect [95% CI]",
             "p (raw)", f"p ({SHORT[correction]})", "n (a/b)", "MDE", "Seeds/arm needed", "Verdict",
             *(CONTROL_HEADS if control else ())]
    return "| " + " | ".join(heads) + " |\n|" + "---|" * len(heads)


MARKDOWN_HEADER = markdown_header()


def _decimals(r: ClaimResult) -> int:
    return 4 if r.claim.metric.startswith("ssim") else 3


def mde_text(r: ClaimResult) -> str:
    """The MDE, with the underpowered mark beside it."""
    d = _decimals(r)
    text = "—" if math.isnan(r.mde) else f"{r.mde:.{d}f}"
    return f"{text} underpowered (thesis effect {r.thesis_effect:+.{d}f})" if r.underpowered else text


def _effect(r: ClaimResult) -> str:
    d = _decimals(r)
    if math.isnan(r.effect):
        return "—"
    thesis = " (thesis)" if r.source == "thesis" else ""
    return f"{r.effect:+.{d}f} [{r.ci[0]:+.{d}f}, {r.ci[1]:+.{d}f}]{thesis}"


def _control(r: ClaimResult) -> list[str]:
    d = _decimals(r)
    if math.isnan(r.control_effect):
        return ["—", "—"]
    return [f"{r.control_effect:+.{d}f} (p {r.control_p:.3g})", f"{r.control_difference:+.{d}f}"]


def markdown_row(r: ClaimResult, control: bool = False) -> str:
    c = r.claim
    test = "thesis cells (Welch)" if r.source == "thesis" else "—" if r.source == "none" else r.test
    cells = [c.section, c.text, c.table, f"`{c.row_b}` vs `{c.row_a}`", c.metric, r.measured_on or c.metric,
             c.arrow, test, _effect(r), *("—" if math.isnan(p) else f"{p:.3g}" for p in (r.p, r.p_adj)),
             f"{r.n_a}/{r.n_b}", mde_text(r), "—" if r.seeds_needed is None else str(r.seeds_needed),
             f"**{r.verdict_text}**", *(_control(r) if control else ())]
    return "| " + " | ".join(cells) + " |"


def has_control(results: Iterable[ClaimResult]) -> bool:
    return any(not math.isnan(r.control_effect) for r in results)


def to_markdown(results: Iterable[ClaimResult], correction: str = "holm") -> str:
    """The claims table: markdown_header(correction) plus one row per result."""
    results = list(results)
    control = has_control(results)
    return "\n".join([markdown_header(correction, control), *(markdown_row(r, control) for r in results)]) + "\n"


def to_terminal(results: Iterable[ClaimResult], width: int = 120) -> list[str]:
    """One line per claim (≤ `width` columns): verdict, rows, metric (PSNR unless named), effect, the test with
    its raw and adjusted p, MDE with the underpowered mark; the control's effect and the proxy on a line below."""
    lines = []
    for r in results:
        c = r.claim
        group, _, a = c.row_a.partition("/")
        b = c.row_b.removeprefix(group + "/")
        test = {"paired": "paired ", "welch": "Welch "}[r.test] if r.source == "runs" else ""
        ps = "p —" if math.isnan(r.p) else f"{test}p {r.p:.2g} {SHORT[r.correction]} {r.p_adj:.2g}"
        mde = "" if math.isnan(r.mde) else f" MDE {r.mde:.3g}" + (" UNDERPOWERED" if r.underpowered else "")
        source = " thesis" if r.source == "thesis" else ""  # the thesis's numbers: not tested on runs
        effect = "—" if math.isnan(r.effect) else f"{r.effect:+.3f}"
        line = (f"  {r.verdict:<13} §{c.section} {group} {b} vs {a} {c.metric.removeprefix('psnr_')}{c.arrow} "
                f"{effect}{source} {ps}{mde}")
        lines.append(line if len(line) <= width else line[:width - 1] + "…")
        notes = [] if math.isnan(r.control_effect) else \
            [f"control {r.control_effect:+.3f}, HardCases-R − control {r.control_difference:+.3f}"]
        notes += [f"proxy: {r.proxy}"] if r.proxy else []
        if notes:
            lines.append(f"    {'; '.join(notes)}"[:width])
    return lines
