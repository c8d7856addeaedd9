"""A table's report as text: Markdown (printed, and a file), the terminal view, CSV (long format, with
p-values) and a self-contained HTML file. All read the result model (srprior.report.model) only."""

from __future__ import annotations

import csv
import html
import io
import textwrap
from pathlib import Path

from srprior import contracts
from srprior.report.model import DASH, Report, RowResult
from srprior.report.names import column_name
from srprior.report.claims import has_control, markdown_header, markdown_row
from srprior.report.claims import to_markdown as claims_markdown
from srprior.report.claims import to_terminal as claims_terminal
from srprior.search_spaces.spec import REGION_METRICS

def _decimals(metric: str) -> int:
    return 4 if metric.startswith("ssim") or metric in REGION_METRICS else 2


def _mean_std(metric: str, mean: float | None, std: float | None) -> str:
    if mean is None:
        return DASH
    return f"{mean:.{_decimals(metric)}f} ± {DASH if std is None else f'{std:.4f}'}"


def _thesis(metric: str, thesis: tuple[float, float] | None) -> str:
    return DASH if thesis is None else _mean_std(metric, *thesis)


def _count(result: RowResult) -> str:
    return f"{len(result.seeds)}/{result.expected}"


def _legend(report: Report) -> list[str]:
    sweep = f"sweep `{report.sweep_id}`" if report.sweep_id else "runs found by content"
    lines = [
        f"Runs: {sweep}, tracking URI `{report.tracking_uri}`; {report.reused} cell(s) reuse runs trained by "
        f"another sweep or table (same science config and seed).",
        "Cells: our mean ± sample std (ddof=1) over seeds of each run's best-validation checkpoint (thesis §4.2: "
        "the validation split is used for model selection; the last step's numbers are in MLflow as final/…), then "
        "the thesis's (mean ± std) as printed. "
        "n = seeds with a finished run / seeds planned. **Bold**: best mean of the column within its group, "
        "among rows with no failed run and not below the bicubic reference. "
        f"† p < 0.05, ‡ p < 0.01 against the group's baseline row: {_tests(report)}; MDE: the smallest "
        "difference these seeds detect with 80% power (α = 0.05), from the spread of the per-seed differences "
        "when paired. "
        f"{DASH}: no value (std needs 2 seeds).",
    ]
    if report.claims:
        lines.append(f"Claims: {_correction(report)}; {_verdict_words(report)} = adjusted p < 0.05 with the "
                     "expected / opposite sign; undecided = these seeds cannot tell (compare the effect with the "
                     "MDE); underpowered = the MDE exceeds the thesis's own effect (thesis setting only), so these "
                     "seeds cannot detect it with 80% power; seeds/arm needed = to detect the thesis's printed "
                     "effect with 80% power at our runs' spread; Test: paired t-test over the seeds both rows ran, "
                     "Welch's where fewer than 2 match; Measured on: the metric the runs measured for the claim.")
        if has_control(report.claims):
            lines.append("Control: each claim's effect on HardCases-R's control set (random tiles of the same size "
                         "from the same candidate pool, README: HardCases-R) and the difference HardCases-R minus "
                         "control, the part of the effect that the selection recipe may add.")
    if report.failed or report.missing:
        lines.append(f"INCOMPLETE: {report.failed} failed and {report.missing} unfinished or missing run(s) are "
                     "not in the table.")
    if report.caption:
        lines.append(f"Setting: {report.caption}")
    return lines


def _tests(report: Report) -> str:
    """Which test the † ‡ used, counted over the report's cells."""
    tests = [c.test for r in report.rows for c in r.cells.values() if c.test]
    paired, welch = tests.count("paired"), tests.count("welch")
    if not welch:
        return "paired t-test over the seeds both rows ran"
    return (f"paired t-test over the seeds both rows ran ({paired} cells), Welch's t-test where fewer than 2 seeds "
            f"match ({welch} cells, marked [Welch])")


def _verdict_words(report: Report) -> str:
    """reproduced / contradicted in the thesis's setting; same / opposite sign where a claim's runs are a proxy."""
    proxy = any(c.proxy for c in report.claims)
    thesis = any(not c.proxy for c in report.claims if c.source == "runs")
    words = ["reproduced / contradicted"] * thesis + ["same sign / opposite sign (proxy: what differs from the "
                                                      "thesis's setting)"] * proxy
    return " and ".join(words) or "verdicts"


def to_markdown(report: Report) -> str:
    spec = report.spec
    head = ["Group", "Row", "n", *map(column_name, spec.metrics)]
    lines = [f"## Table {spec.name}: {spec.title}", "", spec.description, ""]
    if report.caption:
        lines += [f"**Setting:** {report.caption}", ""]
    if report.readings:
        lines += [f"Readings in force: {_readings(report)} (README: The method).", ""]
    if _image_sets(report):
        lines += [f"{_image_sets(report)}.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in report.rows:
        cells = []
        for metric in spec.metrics:
            cell = result.cells[metric]
            ours = _mean_std(metric, cell.mean, cell.std)
            if cell.best:
                ours = f"**{ours}**"
            extra = f" [n={cell.n}]" if 0 < cell.n != len(result.seeds) else ""
            if cell.mde is not None:
                extra += f" [MDE {cell.mde:.{_decimals(metric)}f}]"
            if cell.test == "welch":
                extra += " [Welch]"
            cells.append(f"{ours}{cell.mark}{extra} ({_thesis(metric, cell.thesis)})")
        lines.append("| " + " | ".join([result.group_label, result.row.label, _count(result), *cells]) + " |")
    bicubic = dict(report.bicubic)
    if bicubic:
        cells = [f"{bicubic[m]:.{_decimals(m)}f}" if m in bicubic else DASH for m in spec.metrics]
        lines.append("| Reference | Bicubic (same crops) | — | " + " | ".join(cells) + " |")
    for ref in spec.references:
        cells = [f"{DASH} ({ref.values[m]:.{_decimals(m)}f})" if m in ref.values else f"{DASH} ({DASH})"
                 for m in spec.metrics]
        lines.append("| " + " | ".join([ref.group, f"{ref.label} (published)", DASH, *cells]) + " |")
    if report.claims:
        lines += ["", f"### Claims of the thesis on Table {spec.name}", ""]
        if report.claims_on:
            lines += [f"HardCases is not in these runs: claims on HardCases PSNR are tested on "
                      f"{column_name(report.claims_on)}.", ""]
        lines += [f"{_correction(report)}.", "", claims_markdown(report.claims, report.correction).rstrip()]
    return "\n".join([*lines, "", *_legend(report)]) + "\n"


def _readings(report: Report) -> str:
    return " · ".join(f"{k}={v}" for k, v in report.readings)


def _correction(report: Report) -> str:
    from srprior.stats import CORRECTIONS

    m = max((c.family for c in report.claims if c.source == "runs"), default=0)
    return (f"p adjusted for multiplicity by {CORRECTIONS[report.correction]} over the {m} claim(s) of this table "
            "tested on our runs (the thesis's own numbers: a family apart); verdicts use the adjusted p")


def _image_sets(report: Report) -> str:
    """Which images the region metrics (Table 4.7) and the claims on HardCases used, '' when neither applies."""
    parts = []
    if report.region_sets and (set(REGION_METRICS) & {*report.spec.metrics, *(c.claim.metric for c in report.claims)}):
        parts.append(f"region metrics (PSNR on SSR/PoI, Total) on {', '.join(report.region_sets)}")
    if any(c.claim.metric == "psnr_hardcases" for c in report.claims):
        parts.append("claims on HardCases PSNR tested on " + (f"{column_name(report.claims_on)} (stand-in for "
                     "HardCases)" if report.claims_on else "HardCases"))
    return ("Image sets: " + "; ".join(parts)) if parts else ""


TERMINAL_WIDTH = 120


def _short(metric: str, mean: float | None, std: float | None, mark: str) -> str:
    if mean is None:
        return DASH
    d = _decimals(metric)
    return f"{mean:.{d}f}±{std:.{d}f}{mark}" if std is not None else f"{mean:.{d}f}{mark}"


def _gain_metric(metrics: list[str], bicubic: dict[str, float]) -> str | None:
    """The first PSNR column with a bicubic value on the same crops: its gain over bicubic gets a column."""
    return next((m for m in metrics if m.startswith("psnr") and m in bicubic), None)


def runs_view_metrics(report: Report) -> list[str]:
    """The MLflow metrics behind the console table's columns (the best-validation weights' values and the
    bicubic reference of the gain column): the columns of the runs view a sweep saves (tracking.save_runs_view)."""
    metrics = [m for m in report.spec.metrics if any(r.cells[m].n for r in report.rows)]
    gain = _gain_metric(metrics, dict(report.bicubic))
    return [f"{contracts.SELECTED}{m}" for m in metrics[:6]] + ([f"{contracts.BICUBIC}{gain}"] if gain else [])


def to_terminal(report: Report, files: dict[str, Path] | None = None, resume: str | None = None,
                caption: str | None = None) -> str:
    """The table as a terminal shows it: ≤ 120 columns, our numbers only (mean ± std over seeds with † ‡), each
    row's PSNR gain over bicubic on the same crops (so "the models learn" reads at a glance), the bicubic
    reference, the claims' verdicts in one line and `caption` (what the budget can and cannot show); the
    thesis's numbers and every column stay in the Markdown/CSV/HTML files. Columns without any value are left
    out; when they do not fit, SSIM goes first."""

    spec, bicubic = report.spec, dict(report.bicubic)
    metrics = [m for m in spec.metrics if any(r.cells[m].n for r in report.rows)]
    label_w = min(40, max([len(f"{r.group_label} {r.row.label}") for r in report.rows] + [len("Bicubic (same crops)")]))
    col_w, gain_w = 15, 11
    gain = _gain_metric(metrics, bicubic)

    def fits(ms: list[str]) -> bool:
        return label_w + 6 + len(ms) * (col_w + 1) + (gain_w + 1 if gain else 0) <= TERMINAL_WIDTH

    if not fits(metrics):
        metrics = [m for m in metrics if not m.startswith("ssim")]
    while not fits(metrics):
        metrics.pop()

    def line(label: str, n: str, cells: list[str], delta: str) -> str:
        cols = [f"{c:>{col_w}}" for c in cells]
        if gain:
            cols.insert(metrics.index(gain) + 1, f"{delta:>{gain_w}}")
        return f"{label:{label_w}} {n:4} " + " ".join(cols)

    head = line("", "   n", [column_name(m)[:col_w] for m in metrics], "Δ vs bicub")
    out = [f"Table {spec.name}: {spec.title}"[:TERMINAL_WIDTH]]
    if report.readings:
        out += textwrap.wrap(f"readings: {_readings(report)}", TERMINAL_WIDTH, subsequent_indent="  ")
    if _image_sets(report):
        out += textwrap.wrap(_image_sets(report), TERMINAL_WIDTH, subsequent_indent="  ")
    out += [head, "-" * len(head)]
    for r in report.rows:
        label = f"{r.group_label} {r.row.label}"[:label_w]
        cells = [_short(m, r.cells[m].mean, r.cells[m].std, r.cells[m].mark) for m in metrics]
        mean = r.cells[gain].mean if gain else None
        out.append(line(label, f"{len(r.seeds)}/{r.expected:<2}", cells,
                        DASH if mean is None else f"{mean - bicubic[gain]:+.2f} dB"))
    if bicubic:
        cells = [f"{bicubic[m]:.{_decimals(m)}f}" if m in bicubic else "" for m in metrics]
        out.append(line("Bicubic (same crops)", "", cells, ""))
    legend = "mean±std over seeds of each run's best-validation checkpoint; † p<0.05, ‡ p<0.01 vs the group's " \
             f"baseline ({_tests(report)})"
    out += textwrap.wrap(legend + (f"; Δ vs bicub: mean {column_name(gain)} minus bicubic's on the same crops."
                                   if gain else "."), TERMINAL_WIDTH)
    out += _terminal_claims(report)
    if report.failed or report.missing:
        out.append(f"INCOMPLETE: {report.failed} failed, {report.missing} missing of "
                   f"{sum(r.expected for r in report.rows)} planned runs" + (f"; resume: {resume}" if resume else ""))
    if caption or report.caption:
        out += textwrap.wrap(caption or report.caption, TERMINAL_WIDTH)
    if files:
        out.append(f"with the thesis's numbers: {files.get('html') or next(iter(files.values()))}")
    return "\n".join(out) + "\n"


def _terminal_claims(report: Report) -> list[str]:
    """The claims' verdicts counted in one line, then one line per claim."""
    if not report.claims:
        return []
    verdicts: dict[str, int] = {}
    for c in report.claims:
        key = c.verdict.split(" at ")[0]
        verdicts[key] = verdicts.get(key, 0) + 1
    where = f" on {column_name(report.claims_on)}" if report.claims_on else ""
    return [f"thesis claims{where}: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
            + f" (p {report.correction}-adjusted over the table's claims)", *claims_terminal(report.claims,
                                                                                             TERMINAL_WIDTH)]


def to_csv(report: Report) -> str:
    """Long format, one line per (row, metric): easy to load into pandas and re-test. The first line (kind
    "setting") carries the caption in `label`; `trained` is the preset a row's runs trained, `test` the test
    behind p (paired / welch), `measured_on` and `proxy` what a claim's runs measured and stand in for."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "kind", "group", "row", "label", "metric", "n", "mean", "std", "p_value",
                     "significance", "best", "mde", "thesis_mean", "thesis_std", "values", "p_adjusted",
                     "correction", "verdict", "underpowered", "test", "trained", "measured_on", "proxy",
                     "control_effect", "control_difference"])
    writer.writerow([report.spec.name, "setting", "", "", report.caption])
    for result in report.rows:
        for metric in report.spec.metrics:
            c = result.cells[metric]
            writer.writerow([report.spec.name, "row", result.row.group, result.row.id, result.row.label, metric,
                             c.n, _num(c.mean), _num(c.std), _num(c.p_value), c.mark, int(c.best), _num(c.mde),
                             _num(c.thesis and c.thesis[0]), _num(c.thesis and c.thesis[1]),
                             " ".join(repr(v) for v in c.values), "", "", "", "", c.test or "", result.trained])
    for ref in report.spec.references:
        for metric, value in ref.values.items():
            writer.writerow([report.spec.name, "reference", ref.group, "", ref.label, metric, 0, "", "", "", "", 0,
                             "", repr(value), "", ""])
    for r in report.claims:  # row: b, label: "b vs a", mean: the effect b − a, thesis_mean: the thesis's effect
        c = r.claim
        writer.writerow([report.spec.name, "claim", c.section, c.row_b, f"{c.row_b} vs {c.row_a}", c.metric,
                         f"{r.n_a}/{r.n_b}", repr(r.effect), "", repr(r.p), "", "", repr(r.mde), repr(r.thesis_effect),
                         "", "", repr(r.p_adj), r.correction, r.verdict, int(r.underpowered),
                         r.test if r.source == "runs" else r.source, "", r.measured_on, r.proxy or "",
                         _num(None if r.control_effect != r.control_effect else r.control_effect),
                         _num(None if r.control_effect != r.control_effect else r.control_difference)])
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l{text-align:left}tr.group td{background:#fafafa;font-weight:600;text-align:left}
.best{font-weight:700}.sig{color:#b00}.thesis{display:block;color:#777;font-size:11px}
tr.ref td{color:#555;font-style:italic}p.legend{font-size:12px;color:#444;max-width:70em}"""


def to_html(report: Report) -> str:
    """A single file with inline CSS: opens anywhere, including as an MLflow artifact preview."""
    spec, e = report.spec, html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in ["Row", "n", *map(column_name, spec.metrics)])
    body, group = [], None
    for result in report.rows:
        if result.group_label != group:
            group = result.group_label
            body.append(f'<tr class="group"><td colspan="{len(spec.metrics) + 2}">{e(group)}</td></tr>')
        tds = [f'<td class="l">{e(result.row.label)}</td>', f"<td>{_count(result)}</td>"]
        for metric in spec.metrics:
            c = result.cells[metric]
            ours = e(_mean_std(metric, c.mean, c.std))
            if c.best:
                ours = f'<span class="best">{ours}</span>'
            if c.mark:
                ours += f'<sup class="sig" title="{c.test} p = {c.p_value:.3g}">{c.mark}</sup>'
            if c.mde is not None:
                welch = " (Welch)" if c.test == "welch" else ""
                ours += f'<span class="thesis">MDE {c.mde:.{_decimals(metric)}f}{welch}</span>'
            tds.append(f'<td>{ours}<span class="thesis">thesis {e(_thesis(metric, c.thesis))}</span></td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    for ref in spec.references:
        tds = [f'<td class="l">{e(ref.group)}: {e(ref.label)} (published)</td>', f"<td>{DASH}</td>"]
        tds += [f'<td><span class="thesis">{ref.values[m]:.{_decimals(m)}f}</span></td>' if m in ref.values
                else f"<td>{DASH}</td>" for m in spec.metrics]
        body.append('<tr class="ref">' + "".join(tds) + "</tr>")
    legend = "".join(f'<p class="legend">{e(line).replace("**Bold**", "<b>Bold</b>").replace("`", "")}</p>'
                     for line in _legend(report))
    title = e(f"Table {spec.name}: {spec.title}")
    legend += _html_claims(report)
    setting = f'<p class="legend"><b>Setting:</b> {e(report.caption)}</p>' if report.caption else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h2>{title}</h2><p>{e(spec.description)}</p>{setting}"
            + (f'<p class="legend">Readings in force: {e(_readings(report))}</p>' if report.readings else "")
            + (f'<p class="legend">{e(_image_sets(report))}</p>' if _image_sets(report) else "")
            + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{legend}</body></html>\n")


def _html_claims(report: Report) -> str:
    """The claims table of the HTML page (the Markdown rows without the table column)."""
    if not report.claims:
        return ""
    e, control = html.escape, has_control(report.claims)
    heads = [h.strip() for h in markdown_header(report.correction, control).splitlines()[0].strip("|").split("|")]
    head_c = "".join(f"<th>{e(h)}</th>" for h in heads if h != "Table")
    rows_c = []
    for r in report.claims:
        cells_c = [c.strip() for c in markdown_row(r, control).strip("|").split("|")]
        del cells_c[2]  # the table: this page's
        rows_c.append("<tr>" + "".join(f'<td class="l">{e(c.replace("**", "").replace("`", ""))}</td>'
                                       for c in cells_c) + "</tr>")
    note = (f"<p class=\"legend\">HardCases is not in these runs: claims on HardCases PSNR are tested on "
            f"{e(column_name(report.claims_on))}.</p>") if report.claims_on else ""
    note += f'<p class="legend">{e(_correction(report))}.</p>'
    return (f"<h3>Claims of the thesis on Table {e(report.spec.name)}</h3>{note}<table><thead><tr>{head_c}</tr>"
            f"</thead><tbody>{''.join(rows_c)}</tbody></table>")
