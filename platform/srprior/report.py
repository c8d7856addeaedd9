"""`srprior report`: rebuild a thesis table from a sweep's MLflow runs, next to the numbers the thesis printed.

Each cell is our mean ± sample std over seeds (ddof=1), marked † / ‡ when Welch's t-test against the row's
baseline gives p < 0.05 / 0.01 (seed counts differ and variances need not be equal, hence Welch), bold when it
is the best mean of its column within the model group, followed by the thesis's "(mean ± std)". Written as
Markdown (also printed), CSV (long format, with p-values) and a self-contained HTML file, and logged as artifacts
to the sweep's parent run so the table travels with the runs it was computed from.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import shutil
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from srprior import contracts, tracking
from srprior.errors import UserError
from srprior.search_spaces import get_table
from srprior.search_spaces.claims import CLAIMS_BY_TABLE, evaluate_claims, markdown_header
from srprior.search_spaces.claims import to_markdown as claims_markdown
from srprior.search_spaces.claims import to_terminal as claims_terminal
from srprior.search_spaces.spec import EMBEDDED_METRICS, REGION_METRICS, Row, TableSpec
from srprior.errors import int_in
from srprior.preflight import check_tracking_uri
from srprior.tracking import default_tracking_uri, user_tracking_uri

SIGNIFICANCE = ((0.01, "‡"), (0.05, "†"))  # strictest first
DASH = "—"
ARTIFACT_DIR = "report"


class ReportError(UserError, RuntimeError):
    """Nothing to report (no experiment, no runs, unknown sweep); the message says what was searched."""


@dataclass(frozen=True)
class Cell:
    """One metric of one row: our per-seed values, the thesis's (mean, std), the test against the baseline."""

    values: tuple[float, ...]
    thesis: tuple[float, float] | None
    p_value: float | None = None
    best: bool = False
    mde: float | None = None  # minimum detectable effect vs the baseline at these seeds (80% power, α = 0.05)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return math.fsum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def mark(self) -> str:
        if self.p_value is None:
            return ""
        return next((mark for level, mark in SIGNIFICANCE if self.p_value < level), "")


@dataclass(frozen=True)
class RowResult:
    row: Row
    seeds: tuple[int, ...]  # seeds with a run
    expected: int  # seeds the spec asks for
    cells: dict[str, Cell]


@dataclass(frozen=True)
class Report:
    spec: TableSpec
    tracking_uri: str
    sweep_id: str | None  # the sweep this report belongs to (None: built from a budget, outside a sweep)
    parent_run_id: str | None  # the sweep run that receives the artifacts
    rows: tuple[RowResult, ...]
    claims: tuple = ()  # srprior.search_spaces.claims.ClaimResult of this table's thesis claims
    claims_on: str | None = None  # the metric standing in for HardCases PSNR in the claims (None: HardCases)
    readings: tuple[tuple[str, str], ...] = ()  # the thesis readings in force (srprior.schema.READINGS)
    bicubic: tuple[tuple[str, float], ...] = ()  # metric -> MATLAB-bicubic value on the same evaluation sets
    reused: int = 0  # cells answered by runs another sweep trained (content-addressed reuse)
    failed: int = 0  # cells whose run ended FAILED (shown as missing, never as a value)
    missing: int = 0  # cells without a finished run
    region_sets: tuple[str, ...] = ()  # the image sets the runs' region metrics used (tag srprior.region_set)
    correction: str = "holm"  # multiplicity correction of the claims' p (srprior.stats.adjust)


# ---------------------------------------------------------------------------------------------- reading MLflow
def collect(spec: TableSpec, tracking_uri: str, cells: list[tuple[str, int, str]],
            sweep_id: str | None = None) -> tuple[dict[str, dict[int, dict[str, float]]], dict[str, Any]]:
    """Per row and seed the final metrics of the FINISHED run with the cell's key; counts of reused, failed
    and missing cells and the bicubic reference the runs logged. Runs are found by content, in any srprior
    experiment of the store."""
    if not tracking.store_exists(tracking_uri):
        # MLflow would create an empty store there; a report must not.
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run the sweep first "
                          f"(`srprior sweep --table {spec.name}`), or pass the store with --tracking-uri, "
                          f"MLFLOW_TRACKING_URI or --output-dir")
    runs = tracking.runs_by_key(tracking_uri, {key for _, _, key in cells})
    values: dict[str, dict[int, dict[str, float]]] = {row.id: {} for row in spec.rows}
    counts: dict[str, Any] = {"reused": 0, "failed": 0, "missing": 0}
    bicubic: dict[str, list[float]] = {}
    region_sets = set()
    failures: dict[str, str] = {}  # row -> a failed run's reason
    for row_id, seed, key in cells:
        run = runs.get(key)
        if run is None or run.info.status != "FINISHED":
            counts["failed" if run is not None and run.info.status == "FAILED" else "missing"] += 1
            if run is not None and run.info.status == "FAILED":
                failures[row_id] = run.data.tags.get(contracts.FAILURE, "?")
            continue
        if sweep_id is not None and run.data.tags.get(contracts.SWEEP_ID) != sweep_id:
            counts["reused"] += 1
        values[row_id][seed] = reported_metrics(run.data.metrics)
        region_sets.add(run.data.tags.get(contracts.REGION_SET, "unrecorded"))
        for m, v in run.data.metrics.items():
            if m.startswith(contracts.BICUBIC):
                bicubic.setdefault(m.removeprefix(contracts.BICUBIC), []).append(float(v))
    counts["bicubic"] = tuple((m, math.fsum(v) / len(v)) for m, v in bicubic.items())
    counts["region_sets"] = tuple(sorted(region_sets))
    counts["failed_rows"] = frozenset(failures)
    if not any(values.values()) and counts["failed"] == len(cells):
        from srprior.trainers.health import is_diverged

        diverged = [r for r in failures.values() if is_diverged(r)]
        what = "diverged" if len(diverged) == len(failures) else "failed"
        raise ReportError(f"all {len(cells)} trial run(s) of table {spec.name} {what}, e.g. "
                          f"{(diverged or list(failures.values()))[0]!r}: no value to report (a smaller learning "
                          "rate or λ_AP, or the runs' srprior.failure tags, say more)")
    if not any(values.values()) and sweep_id is not None:
        client = tracking.client(tracking_uri)
        exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
        trained = contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "trial",
                                                                           contracts.SWEEP_ID: sweep_id}))
        if trained:
            raise ReportError(f"sweep {sweep_id} trained {len(trained)} run(s), but none has a key this version "
                              f"plans for table {spec.name}: the trial schema or a budget changed since (a changed "
                              "default re-keys runs, README: Content-addressed runs); rerun the sweep to train "
                              "them under this version, or report with the srprior version that ran it")
    if not any(values.values()):
        raise ReportError(f"no finished trial runs for table {spec.name} at tracking URI {tracking_uri} "
                          f"({counts['failed']} failed, {counts['missing']} not run of {len(cells)} planned). "
                          f"Run the sweep first (`srprior sweep --table {spec.name}`), or point --tracking-uri / "
                          f"MLFLOW_TRACKING_URI / --output-dir at the store that holds it.")
    return values, counts


def summarize(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]],
              expected: dict[str, int] | None = None, bicubic: dict[str, float] | None = None,
              failed_rows: frozenset[str] = frozenset()) -> tuple[RowResult, ...]:
    """Cells with Welch p-values and the minimum detectable effect against each row's baseline, and the best
    mean per column within each group, among rows with no failed run and not below `bicubic` (a model worse
    than bicubic upscaling, or a row whose failed seeds are missing from its mean, is never "best")."""
    from scipy import stats

    from srprior.stats import mde as min_effect

    def per_metric(row_id: str, metric: str) -> tuple[float, ...]:
        runs = values.get(row_id, {})
        return tuple(runs[s][metric] for s in sorted(runs) if metric in runs[s])

    results = []
    for row in spec.rows:
        cells = {}
        for metric in spec.metrics:
            ours = per_metric(row.id, metric)
            p_value = mde = None
            if row.baseline is not None:
                base = per_metric(row.baseline, metric)
                # Both samples constant: the t statistic is undefined (scipy warns and returns nan).
                if len(ours) >= 2 and len(base) >= 2 and len(set(ours)) + len(set(base)) > 2:
                    p = float(stats.ttest_ind(ours, base, equal_var=False).pvalue)
                    p_value = p if math.isfinite(p) else None
                    mde = min_effect(float(np.std(base, ddof=1)), float(np.std(ours, ddof=1)), len(base), len(ours))
            cells[metric] = Cell(ours, row.thesis.get(metric), p_value, mde=mde)
        n = expected[row.id] if expected else len(spec.row_seeds(row))
        results.append(RowResult(row, tuple(sorted(values.get(row.id, {}))), n, cells))
    for metric in spec.metrics:  # higher is better for every column (PSNR, SSIM, DI)
        for group in {r.row.group for r in results}:
            floor = (bicubic or {}).get(metric, -math.inf)
            means = [r.cells[metric].mean for r in results if r.row.group == group and r.row.id not in failed_rows]
            best = max((m for m in means if m is not None and m >= floor), default=None)
            for r in results:
                cell = r.cells[metric]
                if r.row.group == group and best is not None and cell.mean == best and r.row.id not in failed_rows:
                    r.cells[metric] = replace(cell, best=True)
    return tuple(results)


def reported_metrics(logged: dict[str, float]) -> dict[str, float]:
    """The numbers a table shows for one run: the best-validation weights' (best/…, thesis §4.2's model
    selection) over the last step's (final/…); runs logged before model selection have plain names."""
    out = {m: float(v) for m, v in logged.items() if "/" not in m or m == contracts.OBJECTIVE}
    out.update({m.removeprefix(contracts.SELECTED): float(v) for m, v in logged.items()
                if m.startswith(contracts.SELECTED)})
    return {m: v for m, v in out.items() if math.isfinite(v)}


def build_report(spec: TableSpec, tracking_uri: str, cells: list[tuple[str, int, str]],
                 sweep_id: str | None = None, parent_run_id: str | None = None,
                 readings: dict[str, str] | None = None, correction: str = "holm") -> Report:
    """The table `spec` over the planned `cells` (row id, seed, trial key) of a sweep or a budget; `readings`
    (srprior.schema.readings_in_force of its trials) go into the header; the claims' p are adjusted by
    `correction` (srprior.stats.adjust) over this table's claims."""
    values, counts = collect(spec, tracking_uri, cells, sweep_id)
    failed_rows = counts.pop("failed_rows")
    spec = with_logged_benchmarks(spec, values)
    expected = {row.id: sum(1 for r, _, _ in cells if r == row.id) for row in spec.rows}
    kept = {row.id for row in spec.rows if expected[row.id]}
    spec = replace(spec, rows=tuple(replace(row, baseline=row.baseline if row.baseline in kept else None)
                                    for row in spec.rows if row.id in kept))
    claim_values, stand_in = _claim_values(values)
    claims = evaluate_claims(CLAIMS_BY_TABLE.get(spec.name, ()), claim_values, correction)
    table = summarize(spec, values, expected, dict(counts["bicubic"]), failed_rows)
    return Report(spec, tracking_uri, sweep_id, parent_run_id, table, claims,
                  stand_in, tuple((readings or {}).items()), correction=correction, **counts)


def _claim_values(values: dict[str, dict[int, dict[str, float]]]) -> tuple[dict, str | None]:
    """The thesis states most claims on HardCases, which is not public: without it, a claim on HardCases is
    tested on HardCases-R (rebuilt), else on the embedded default, and the report says which."""
    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    if "psnr_hardcases" in logged:
        return values, None
    stand_in = next((m for m in ("psnr_hardcases_r", "psnr_embedded") if m in logged), None)
    if stand_in is None:
        return values, None
    swapped = {row: {seed: {**m, "psnr_hardcases": m[stand_in]} if stand_in in m else m for seed, m in runs.items()}
               for row, runs in values.items()}
    return swapped, stand_in


def with_logged_benchmarks(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]]) -> TableSpec:
    """`spec` with leading columns for what the runs logged but the thesis has no column for (the embedded
    default's PSNR/SSIM, when a sweep ran without benchmark data; HardCases-R, the rebuilt set, never under
    the thesis's HardCases column), so such sweeps still show our numbers."""
    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    extra = tuple(m for m in (*EMBEDDED_METRICS, *contracts.REBUILT_METRICS) if m in logged and m not in spec.metrics)
    return replace(spec, metrics=(*extra, *spec.metrics)) if extra else spec


# ---------------------------------------------------------------------------------------------- rendering
COLUMN_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "set5": "Set5", "set14": "Set14", "bsd100": "BSD100",
                "urban100": "Urban100", "hardcases": "HardCases", "embedded": "Embedded", "di": "DI", "psnr_total": "Total PSNR",
                "psnr_ssr": "PSNR on SSR", "psnr_poi": "PSNR on PoI",
                "val/psnr": "Val PSNR", "hardcases_r": "HardCases-R (rebuilt)"}


def column_name(metric: str) -> str:
    if metric in COLUMN_NAMES:
        return COLUMN_NAMES[metric]
    kind, _, bench = metric.partition("_")
    return f"{COLUMN_NAMES.get(bench, bench)} {COLUMN_NAMES.get(kind, kind)}"


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
        "† p < 0.05, ‡ p < 0.01: Welch's t-test against the group's baseline row; MDE: the smallest difference "
        "these seeds detect with 80% power (α = 0.05). "
        f"{DASH}: no value (std needs 2 seeds).",
    ]
    if report.claims:
        lines.append(f"Claims: {_correction(report)}; reproduced / contradicted = adjusted p < 0.05 with the "
                     "expected / opposite sign; undecided = these seeds cannot tell (compare the effect with the "
                     "MDE); underpowered = the MDE exceeds the thesis's own effect, so these seeds cannot detect "
                     "it with 80% power; seeds/arm needed = to detect the thesis's printed effect with 80% power "
                     "at our runs' spread.")
    if report.failed or report.missing:
        lines.append(f"INCOMPLETE: {report.failed} failed and {report.missing} unfinished or missing run(s) are "
                     "not in the table.")
    return lines


def to_markdown(report: Report) -> str:
    spec = report.spec
    head = ["Group", "Row", "n", *map(column_name, spec.metrics)]
    lines = [f"## Table {spec.name}: {spec.title}", "", spec.description, ""]
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
            cells.append(f"{ours}{cell.mark}{extra} ({_thesis(metric, cell.thesis)})")
        lines.append("| " + " | ".join([result.row.group, result.row.label, _count(result), *cells]) + " |")
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
    import textwrap

    spec, bicubic = report.spec, dict(report.bicubic)
    metrics = [m for m in spec.metrics if any(r.cells[m].n for r in report.rows)]
    label_w = min(34, max([len(f"{r.row.group} {r.row.label}") for r in report.rows] + [len("Bicubic (same crops)")]))
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
        label = f"{r.row.group} {r.row.label}"[:label_w]
        cells = [_short(m, r.cells[m].mean, r.cells[m].std, r.cells[m].mark) for m in metrics]
        mean = r.cells[gain].mean if gain else None
        out.append(line(label, f"{len(r.seeds)}/{r.expected:<2}", cells,
                        DASH if mean is None else f"{mean - bicubic[gain]:+.2f} dB"))
    if bicubic:
        cells = [f"{bicubic[m]:.{_decimals(m)}f}" if m in bicubic else "" for m in metrics]
        out.append(line("Bicubic (same crops)", "", cells, ""))
    legend = "mean±std over seeds of each run's best-validation checkpoint; † p<0.05, ‡ p<0.01 vs the group's " \
             "baseline (Welch)"
    out += textwrap.wrap(legend + (f"; Δ vs bicub: mean {column_name(gain)} minus bicubic's on the same crops."
                                   if gain else "."), TERMINAL_WIDTH)
    if report.claims:
        verdicts: dict[str, int] = {}
        for c in report.claims:
            key = c.verdict.split(" at ")[0]
            verdicts[key] = verdicts.get(key, 0) + 1
        where = f" on {column_name(report.claims_on)}" if report.claims_on else ""
        out.append(f"thesis claims{where}: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
                   + f" (p {report.correction}-adjusted over the table's claims)")
        out += claims_terminal(report.claims, TERMINAL_WIDTH)
    if report.failed or report.missing:
        out.append(f"INCOMPLETE: {report.failed} failed, {report.missing} missing of "
                   f"{sum(r.expected for r in report.rows)} planned runs" + (f"; resume: {resume}" if resume else ""))
    if caption:
        out += textwrap.wrap(caption, TERMINAL_WIDTH)
    if files:
        out.append(f"with the thesis's numbers: {files.get('html') or next(iter(files.values()))}")
    return "\n".join(out) + "\n"


def to_csv(report: Report) -> str:
    """Long format, one line per (row, metric): easy to load into pandas and re-test."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "kind", "group", "row", "label", "metric", "n", "mean", "std", "p_value",
                     "significance", "best", "mde", "thesis_mean", "thesis_std", "values", "p_adjusted",
                     "correction", "verdict", "underpowered"])
    for result in report.rows:
        for metric in report.spec.metrics:
            c = result.cells[metric]
            writer.writerow([report.spec.name, "row", result.row.group, result.row.id, result.row.label, metric,
                             c.n, _num(c.mean), _num(c.std), _num(c.p_value), c.mark, int(c.best), _num(c.mde),
                             _num(c.thesis and c.thesis[0]), _num(c.thesis and c.thesis[1]),
                             " ".join(repr(v) for v in c.values)])
    for ref in report.spec.references:
        for metric, value in ref.values.items():
            writer.writerow([report.spec.name, "reference", ref.group, "", ref.label, metric, 0, "", "", "", "", 0,
                             "", repr(value), "", ""])
    for r in report.claims:  # row: b, label: "b vs a", mean: the effect b − a, thesis_mean: the thesis's effect
        c = r.claim
        writer.writerow([report.spec.name, "claim", c.section, c.row_b, f"{c.row_b} vs {c.row_a}", c.metric,
                         f"{r.n_a}/{r.n_b}", repr(r.effect), "", repr(r.p), "", "", repr(r.mde), repr(r.thesis_effect),
                         "", "", repr(r.p_adj), r.correction, r.verdict, int(r.underpowered)])
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
        if result.row.group != group:
            group = result.row.group
            body.append(f'<tr class="group"><td colspan="{len(spec.metrics) + 2}">{e(group)}</td></tr>')
        tds = [f'<td class="l">{e(result.row.label)}</td>', f"<td>{_count(result)}</td>"]
        for metric in spec.metrics:
            c = result.cells[metric]
            ours = e(_mean_std(metric, c.mean, c.std))
            if c.best:
                ours = f'<span class="best">{ours}</span>'
            if c.mark:
                ours += f'<sup class="sig" title="Welch p = {c.p_value:.3g}">{c.mark}</sup>'
            if c.mde is not None:
                ours += f'<span class="thesis">MDE {c.mde:.{_decimals(metric)}f}</span>'
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
    if report.claims:
        heads = [h.strip() for h in markdown_header(report.correction).splitlines()[0].strip("|").split("|")]
        head_c = "".join(f"<th>{e(h)}</th>" for h in heads if h != "Table")
        rows_c = []
        for r in report.claims:
            cells_c = [c.strip() for c in r.to_markdown_row().strip("|").split("|")]
            del cells_c[2]  # the table: this page's
            rows_c.append("<tr>" + "".join(f'<td class="l">{e(c.replace("**", "").replace("`", ""))}</td>'
                                           for c in cells_c) + "</tr>")
        note = (f"<p class=\"legend\">HardCases is not in these runs: claims on HardCases PSNR are tested on "
                f"{e(column_name(report.claims_on))}.</p>") if report.claims_on else ""
        note += f'<p class="legend">{e(_correction(report))}.</p>'

        legend += (f"<h3>Claims of the thesis on Table {e(spec.name)}</h3>{note}<table><thead><tr>{head_c}</tr></thead>"
                   f"<tbody>{''.join(rows_c)}</tbody></table>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h2>{title}</h2><p>{e(spec.description)}</p>"
            + (f'<p class="legend">Readings in force: {e(_readings(report))}</p>' if report.readings else "")
            + (f'<p class="legend">{e(_image_sets(report))}</p>' if _image_sets(report) else "")
            + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{legend}</body></html>\n")


# ---------------------------------------------------------------------------------------------- output
def write_report(report: Report, out_dir: str | Path, log_artifacts: bool = True,
                 tracking_uri: str | None = None) -> dict[str, Path]:
    """Write table-<name>.{md,csv,html} and summary-<name>.png into `out_dir`; log them to the sweep's parent
    run when there is one
    (through `tracking_uri`, e.g. the sweep's live server, when the report names the store by its path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table-{report.spec.name}"
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("html", to_html)):
        paths[ext] = out / f"{stem}.{ext}"
        paths[ext].write_text(render(report), encoding="utf-8")
    from srprior.plots import summary_plot

    try:  # PSNR and DI against λ_AP per model (or per row), every seed a dot
        paths["png"] = summary_plot(report, out / f"summary-{report.spec.name}.png")
    except ValueError:  # nothing to plot (no PSNR or DI values yet)
        pass
    if log_artifacts and report.parent_run_id:
        _log_artifacts(tracking_uri or report.tracking_uri, report.parent_run_id, list(paths.values()))
    return paths


def _log_artifacts(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """Attach `paths` to the run under report/.

    Sweeps write through a local `mlflow server` (srprior.tracking), so their runs' artifact URIs are
    mlflow-artifacts:/<path>, which only a server can resolve; reading the SQLite store directly, we put the files
    where that server keeps them (<store folder>/mlartifacts/<path>) instead of starting one.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    served = tracking.served_artifacts(tracking_uri, client.get_run(run_id).info.artifact_uri)
    if served is not None:
        target = served / ARTIFACT_DIR
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copyfile(path, target / path.name)
        return
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)


def resolve_tracking_uri(cli_value: str | None, output_dir: str) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the platform's default store under `output_dir`."""
    return cli_value or user_tracking_uri() or default_tracking_uri(output_dir)


def sweep_cells(table: str, tracking_uri: str, sweep: str = "latest",
                replan: bool = False) -> tuple[list, str | None, str | None, dict]:
    """(cells, sweep id, parent run id, readings) of table `table` in sweep `sweep` ('latest': the newest sweep that
    covered it): the cells and readings the sweep recorded on its parent run (contracts.CELLS_ARTIFACT), so a
    default changed since cannot change what the report looks for. replan: rebuild the plan from the sweep's
    stored options with today's code instead (sweeps that recorded no cells)."""
    if not tracking.store_exists(tracking_uri):
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run `srprior sweep --table {table}` "
                          "first, or pass the store with --tracking-uri, MLFLOW_TRACKING_URI or --output-dir")
    client = tracking.client(tracking_uri)
    exp = client.get_experiment_by_name(contracts.table_experiment(table))
    flt = contracts.tag_filter({contracts.ROLE: "sweep", **({contracts.SWEEP_ID: sweep} if sweep != "latest" else {})})
    parents = contracts.search_all(client, [exp.experiment_id], flt, ("attributes.start_time DESC",)) if exp else []
    parents = [p for p in parents if contracts.OPTIONS_TAG in p.data.tags]
    if not parents:
        raise ReportError(f"no sweep {'' if sweep == 'latest' else repr(sweep) + ' '}of table {table} in "
                          f"{tracking_uri}; run `srprior sweep --table {table}` or give --budget to report the "
                          "runs a budget would use")
    parent = parents[0]
    sweep_id, run_id = parent.data.tags.get(contracts.SWEEP_ID), parent.info.run_id
    if not replan:
        recorded = tracking.read_json_artifact(tracking_uri, run_id, contracts.CELLS_ARTIFACT)
        if recorded is None:
            raise ReportError(f"sweep {sweep_id} of table {table} recorded no cells (an srprior older than the "
                              f"record); `srprior report --table {table} --replan` rebuilds its plan with today's "
                              "code (a default changed since would change the cells it looks for)")
        return [tuple(c) for c in recorded["cells"]], sweep_id, run_id, recorded["readings"]
    from srprior.plan import make_plan, plan_readings

    plan = make_plan(json.loads(parent.data.tags[contracts.OPTIONS_TAG]))
    return plan.cells[table], sweep_id, run_id, plan_readings(plan, table)


def budget_cells(table: str, budget: str, seeds: int | None, sets: list[str] | None) -> list:
    from srprior.plan import make_plan

    return make_plan({"table": table, "budget": budget, "seeds": seeds, "set": sets}).cells[table]


# ---------------------------------------------------------------------------------------------- power
PRIMARY = ("psnr_hardcases", "psnr_hardcases_r", "psnr_urban100", "psnr_bsd100", "psnr_set14", "psnr_set5",
           "psnr_embedded", "psnr_total")  # the metric power is sized on: the thesis's headline set first


@dataclass(frozen=True)
class SeedPlan:
    table: str
    metric: str
    std: float  # pooled over rows (root mean of the per-row variances)
    source: str  # "runs" (with how many) or "thesis"
    seeds: int | None  # per arm to detect the effect with 80% power; None: no spread to size from


def seeds_for_power(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]], effect: float) -> SeedPlan:
    """Seeds per row for a Welch test of every row against its baseline to detect `effect` (in the metric's
    unit, dB for PSNR) with 80% power at α = 0.05, from the runs' own spread (or the thesis's printed stds when
    fewer than two rows have two seeds)."""
    from srprior.stats import seeds_needed

    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    metric = next((m for m in PRIMARY if m in logged), next(m for m in PRIMARY if m in spec.metrics))
    spreads = [np.var([r[metric] for r in runs.values() if metric in r], ddof=1)
               for runs in values.values() if sum(metric in r for r in runs.values()) >= 2]
    source = f"runs ({sum(len(v) for v in values.values())})"
    if len(spreads) < 2:
        thesis_metric = metric if metric in spec.metrics else "psnr_hardcases"
        spreads = [row.thesis[thesis_metric][1] ** 2 for row in spec.rows if thesis_metric in row.thesis]
        metric, source = thesis_metric, "thesis"
    if not spreads:
        return SeedPlan(spec.name, metric, math.nan, source, None)
    std = math.sqrt(math.fsum(spreads) / len(spreads))
    return SeedPlan(spec.name, metric, std, source, seeds_needed(effect, std, std))


# ---------------------------------------------------------------------------------------------- search
def search_report(name: str, tracking_uri: str, sweep: str = "latest") -> Report:
    """A search as a table: one row per sampled configuration (best mean objective first), mean ± std over its
    seeds, Welch's t-test of every configuration against the best one."""
    from srprior.search_spaces.search import get_search
    from srprior.search_spaces.spec import TableSpec

    spec = get_search(name)
    if not tracking.store_exists(tracking_uri):
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run `srprior sweep --search {name}`")
    client = tracking.client(tracking_uri)
    exp = client.get_experiment_by_name(spec.experiment)
    tags = {contracts.ROLE: "trial"}
    if sweep == "latest" and exp is not None:
        parents = contracts.search_all(client, [exp.experiment_id], contracts.tag_filter({contracts.ROLE: "sweep"}),
                                       ("attributes.start_time DESC",))
        sweep = parents[0].data.tags[contracts.SWEEP_ID] if parents else "latest"
    if sweep != "latest":
        tags[contracts.SWEEP_ID] = sweep
    runs = contracts.search_all(client, [exp.experiment_id], contracts.tag_filter(tags)) if exp else []
    runs = [r for r in runs if r.info.status == "FINISHED" and contracts.OBJECTIVE in r.data.metrics]
    if not runs:
        raise ReportError(f"no finished trial runs of search {name} (sweep {sweep}) at {tracking_uri}")
    by_config: dict[str, list] = {}
    for run in runs:
        by_config.setdefault(run.data.tags[contracts.CONFIG_HASH], []).append(run)
    means = {h: math.fsum(r.data.metrics[contracts.OBJECTIVE] for r in rs) / len(rs) for h, rs in by_config.items()}
    order = sorted(by_config, key=lambda h: -means[h])
    rows, values = [], {}
    for h in order:
        p = by_config[h][0].data.params
        label = f"λ_AP={float(p['lambda_ap']):.2e}, w={p['w']}, N_SSR={p['n_ssr']}, {p['scenario']}"
        rows.append(Row(f"cfg-{h[:8]}", spec.preset, label, {}, baseline=None if h == order[0] else f"cfg-{order[0][:8]}"))
        values[f"cfg-{h[:8]}"] = {int(r.data.tags[contracts.SEED]): reported_metrics(r.data.metrics)
                                  for r in by_config[h]}
    table = TableSpec(f"search-{name}", f"Optuna search {name}", f"{len(order)} configurations of {spec.preset}; "
                      f"objective: mean {contracts.OBJECTIVE} over seeds; † ‡ against the best configuration.",
                      (contracts.OBJECTIVE,), tuple(rows))
    table = with_logged_benchmarks(table, values)
    parent = None
    if exp is not None:
        found = tracking.find_runs(client, exp.experiment_id, {contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep}) \
            if sweep != "latest" else []
        parent = found[0].info.run_id if found else None
    expected = {row.id: len(values[row.id]) for row in rows}
    return Report(table, tracking_uri, None if sweep == "latest" else sweep, parent,
                  summarize(table, values, expected))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a thesis table (or a search) from MLflow runs: Markdown, CSV, HTML")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", help="thesis table, e.g. 4.2 (4.2-4.8, smoke)")
    what.add_argument("--search", help="Optuna search name (edsr-t, rnan-t, smoke)")
    p.add_argument("--sweep", default="latest", help="sweep id, or 'latest' (default): the newest sweep of it")
    p.add_argument("--replan", action="store_true",
                   help="rebuild the sweep's plan from its stored options with today's code instead of reading the "
                        "cells it recorded (sweeps made before srprior recorded them)")
    p.add_argument("--budget", help="instead of a sweep: the runs this budget's plan uses (smoke, short, thesis)")
    p.add_argument("--seeds", type=int_in(1, 1000), help="with --budget: seeds per row")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --budget: science overrides")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else the store under --output-dir)")
    p.add_argument("--output-dir", help="platform output folder holding the default store (default: as `srprior "
                                        "sweep`)")
    p.add_argument("--claims-correction", choices=("holm", "bh"), default="holm",
                   help="multiplicity correction of the claims' p over a table: holm (family-wise error, default) "
                        "or bh (Benjamini–Hochberg, false discovery rate)")
    p.add_argument("--out", default=None,
                   help="folder for the report files (default: <output-dir>/reports/<sweep id or budget>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from srprior.plan import PlanError
    from srprior.schema_fields import ConfigError

    try:
        tracking_uri = resolve_tracking_uri(args.tracking_uri, args.output_dir)
        check_tracking_uri(tracking_uri)  # a bad or unreachable URI: one line within seconds, not MLflow's retries
        if args.search:
            report = search_report(args.search, tracking_uri, args.sweep)
        else:
            spec = get_table(args.table)
            if args.budget:
                from srprior.plan import make_plan, plan_readings

                plan = make_plan({"table": spec.name, "budget": args.budget, "seeds": args.seeds, "set": args.set})
                cells, sweep, parent = plan.cells[spec.name], None, None
                readings = plan_readings(plan, spec.name)
            else:
                cells, sweep, parent, readings = sweep_cells(spec.name, tracking_uri, args.sweep, args.replan)
            report = build_report(spec, tracking_uri, cells, sweep, parent, readings, args.claims_correction)
    except (KeyError, ReportError, PlanError, ConfigError) as exc:
        print(f"srprior report: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    folder = report.sweep_id or (f"budget-{args.budget}" if args.budget else "search")
    paths = write_report(report, args.out or tracking.output_dir(args.output_dir) / "reports" / folder)
    print(to_markdown(report))
    where = f"logged to run {report.parent_run_id} under {ARTIFACT_DIR}/" if report.parent_run_id else \
        "no sweep parent run to log them to"
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({where})", file=sys.stderr)
    return 0
