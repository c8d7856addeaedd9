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
import math
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from srprior.search_spaces import get_table
from srprior.search_spaces.spec import EMBEDDED_METRICS, REGION_METRICS, Row, TableSpec
from srprior.tracking import DEFAULT_OUTPUT, artifacts_dir, default_tracking_uri, user_tracking_uri

SIGNIFICANCE = ((0.01, "‡"), (0.05, "†"))  # strictest first
DASH = "—"
ARTIFACT_DIR = "report"


class ReportError(RuntimeError):
    """Nothing to report (no experiment, no runs, unknown sweep); the message says what was searched."""


@dataclass(frozen=True)
class Cell:
    """One metric of one row: our per-seed values, the thesis's (mean, std), the test against the baseline."""

    values: tuple[float, ...]
    thesis: tuple[float, float] | None
    p_value: float | None = None
    best: bool = False

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
    experiment: str  # where the runs were read from
    sweep_id: str | None  # None: all sweeps
    parent_run_id: str | None  # the sweep run that receives the artifacts
    rows: tuple[RowResult, ...]
    ignored_runs: int  # trial runs of rows the spec does not have


# ---------------------------------------------------------------------------------------------- reading MLflow
def _search_all(client: Any, experiment_id: str, filter_string: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _trials(client: Any, experiment_name: str, table: str) -> tuple[Any, list[Any], list[Any]]:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None, [], []
    trials = _search_all(client, experiment.experiment_id,
                         f"tags.`srprior.role` = 'trial' AND tags.table = '{table}'")
    sweeps = _search_all(client, experiment.experiment_id, "tags.`srprior.role` = 'sweep'")
    return experiment, trials, sweeps


def _pick_sweep(trials: list[Any], sweeps: list[Any], sweep: str) -> tuple[str | None, str | None, list[Any]]:
    """(sweep id, parent run id, trials of that sweep); runs are sorted newest first."""
    def sweep_of(run: Any) -> str | None:
        return run.data.tags.get("srprior.sweep_id")

    ids_with_trials = {sweep_of(run) for run in trials}
    if sweep == "all":
        return None, (sweeps[0].info.run_id if sweeps else None), trials
    if sweep == "latest":
        chosen = next((sweep_of(p) for p in sweeps if sweep_of(p) in ids_with_trials), sweep_of(trials[0]))
    else:
        chosen = sweep
    if chosen is None:  # untagged trials: nothing to restrict by
        return None, None, trials
    selected = [run for run in trials if sweep_of(run) == chosen]
    if not selected:
        known = ", ".join(sorted(i for i in ids_with_trials if i)) or "none"
        raise ReportError(f"sweep {chosen!r} has no trial runs; sweep ids with runs: {known}")
    parent = next((p.info.run_id for p in sweeps if sweep_of(p) == chosen), None)
    return chosen, parent, selected


def _seed_of(run: Any) -> int | None:
    value = run.data.tags.get("seed", run.data.params.get("seed"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def collect(spec: TableSpec, tracking_uri: str, experiment: str | None = None,
            sweep: str = "latest") -> tuple[dict[str, dict[int, dict[str, float]]], Report]:
    """Per row and seed the final metrics of its newest finished run, and a Report (without rows yet) saying
    where they came from.

    Evaluation-only tables (spec.source) fall back to the source table's runs when they have none of their own.
    """
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        # MLflow would create an empty store there; a report must not.
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run the sweep first "
                          f"(`srprior sweep --table {spec.name}`), or pass the store with --tracking-uri, "
                          f"MLFLOW_TRACKING_URI or --output-dir")
    client = MlflowClient(tracking_uri=tracking_uri)
    candidates = [(experiment or spec.experiment, spec.name)]
    if spec.source and experiment is None:
        candidates.append((get_table(spec.source).experiment, spec.source))
    searched = []
    for name, table in candidates:
        exp, trials, sweeps = _trials(client, name, table)
        searched.append(f"experiment {name!r} ({'exists' if exp else 'missing'}, tag table={table!r})")
        if trials:
            break
    else:
        raise ReportError(
            f"no trial runs for table {spec.name} at tracking URI {tracking_uri}: searched "
            f"{'; '.join(searched)} for runs tagged srprior.role=trial. Run the sweep first "
            f"(`srprior sweep --table {spec.name}`), or point --tracking-uri / MLFLOW_TRACKING_URI / --experiment "
            f"at the store that holds it.")
    sweep_id, parent, selected = _pick_sweep(trials, sweeps, sweep)
    # A failed or still-running rerun must not hide a finished run of the same seed (sort is stable).
    selected = sorted(selected, key=lambda run: run.info.status != "FINISHED")
    row_ids = {row.id for row in spec.rows}
    values: dict[str, dict[int, dict[str, float]]] = {row_id: {} for row_id in row_ids}
    ignored = 0
    for run in selected:  # finished first, newest first: the first run of a (row, seed) wins
        row_id, seed = run.data.tags.get("row"), _seed_of(run)
        if row_id not in row_ids or seed is None:
            ignored += 1
            continue
        if seed not in values[row_id]:
            values[row_id][seed] = {m: float(v) for m, v in run.data.metrics.items() if math.isfinite(v)}
    shell = Report(spec, tracking_uri, name, sweep_id, parent, (), ignored)
    return values, shell


# ---------------------------------------------------------------------------------------------- statistics
def summarize(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]]) -> tuple[RowResult, ...]:
    """Cells with Welch p-values against each row's baseline and the best mean per column within each group."""
    from scipy import stats

    def per_metric(row_id: str, metric: str) -> tuple[float, ...]:
        runs = values.get(row_id, {})
        return tuple(runs[s][metric] for s in sorted(runs) if metric in runs[s])

    results = []
    for row in spec.rows:
        cells = {}
        for metric in spec.metrics:
            ours = per_metric(row.id, metric)
            p_value = None
            if row.baseline is not None:
                base = per_metric(row.baseline, metric)
                # Both samples constant: the t statistic is undefined (scipy warns and returns nan).
                if len(ours) >= 2 and len(base) >= 2 and len(set(ours)) + len(set(base)) > 2:
                    p = float(stats.ttest_ind(ours, base, equal_var=False).pvalue)
                    p_value = p if math.isfinite(p) else None
            cells[metric] = Cell(ours, row.thesis.get(metric), p_value)
        results.append(RowResult(row, tuple(sorted(values.get(row.id, {}))), len(spec.row_seeds(row)), cells))
    for metric in spec.metrics:  # higher is better for every column (PSNR, SSIM, DI)
        for group in {r.row.group for r in results}:
            means = [r.cells[metric].mean for r in results if r.row.group == group]
            best = max((m for m in means if m is not None), default=None)
            for r in results:
                cell = r.cells[metric]
                if r.row.group == group and best is not None and cell.mean == best:
                    r.cells[metric] = Cell(cell.values, cell.thesis, cell.p_value, best=True)
    return tuple(results)


def build_report(spec: TableSpec, tracking_uri: str, experiment: str | None = None, sweep: str = "latest") -> Report:
    values, report = collect(spec, tracking_uri, experiment, sweep)
    spec = with_logged_benchmarks(spec, values)
    return replace(report, spec=spec, rows=summarize(spec, values))


def with_logged_benchmarks(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]]) -> TableSpec:
    """`spec` with leading columns for what the runs logged but the thesis has no column for (the embedded
    default's PSNR/SSIM, when a sweep ran without benchmark data), so such sweeps still show our numbers."""
    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    extra = tuple(m for m in EMBEDDED_METRICS if m in logged and m not in spec.metrics)
    return replace(spec, metrics=(*extra, *spec.metrics)) if extra else spec


# ---------------------------------------------------------------------------------------------- rendering
COLUMN_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "set5": "Set5", "set14": "Set14", "bsd100": "BSD100",
                "urban100": "Urban100", "hardcases": "HardCases", "embedded": "Embedded", "di": "DI", "psnr_total": "Total PSNR",
                "psnr_ssr": "PSNR on SSR", "psnr_poi": "PSNR on PoI"}


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
    sweep = report.sweep_id or "all sweeps"
    lines = [
        f"Runs: experiment `{report.experiment}`, sweep `{sweep}`, tracking URI `{report.tracking_uri}`.",
        "Cells: our mean ± sample std (ddof=1) over seeds, then the thesis's (mean ± std) as printed. "
        "n = seeds with a run / seeds planned. **Bold**: best mean of the column within its group. "
        "† p < 0.05, ‡ p < 0.01: Welch's t-test against the group's baseline row. "
        f"{DASH}: no value (std needs 2 seeds).",
    ]
    if report.ignored_runs:
        lines.append(f"{report.ignored_runs} trial run(s) of rows not in table {report.spec.name} were ignored.")
    return lines


def to_markdown(report: Report) -> str:
    spec = report.spec
    head = ["Group", "Row", "n", *map(column_name, spec.metrics)]
    lines = [f"## Table {spec.name}: {spec.title}", "", spec.description, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in report.rows:
        cells = []
        for metric in spec.metrics:
            cell = result.cells[metric]
            ours = _mean_std(metric, cell.mean, cell.std)
            if cell.best:
                ours = f"**{ours}**"
            extra = f" [n={cell.n}]" if 0 < cell.n != len(result.seeds) else ""
            cells.append(f"{ours}{cell.mark}{extra} ({_thesis(metric, cell.thesis)})")
        lines.append("| " + " | ".join([result.row.group, result.row.label, _count(result), *cells]) + " |")
    for ref in spec.references:
        cells = [f"{DASH} ({ref.values[m]:.{_decimals(m)}f})" if m in ref.values else f"{DASH} ({DASH})"
                 for m in spec.metrics]
        lines.append("| " + " | ".join([ref.group, f"{ref.label} (published)", DASH, *cells]) + " |")
    return "\n".join([*lines, "", *_legend(report)]) + "\n"


def to_csv(report: Report) -> str:
    """Long format, one line per (row, metric): easy to load into pandas and re-test."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "kind", "group", "row", "label", "metric", "n", "mean", "std", "p_value",
                     "significance", "best", "thesis_mean", "thesis_std", "values"])
    for result in report.rows:
        for metric in report.spec.metrics:
            c = result.cells[metric]
            writer.writerow([report.spec.name, "row", result.row.group, result.row.id, result.row.label, metric,
                             c.n, _num(c.mean), _num(c.std), _num(c.p_value), c.mark, int(c.best),
                             _num(c.thesis and c.thesis[0]), _num(c.thesis and c.thesis[1]),
                             " ".join(repr(v) for v in c.values)])
    for ref in report.spec.references:
        for metric, value in ref.values.items():
            writer.writerow([report.spec.name, "reference", ref.group, "", ref.label, metric, 0, "", "", "", "", 0,
                             repr(value), "", ""])
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
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style></head><body><h2>{title}</h2><p>{e(spec.description)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{legend}</body></html>\n")


# ---------------------------------------------------------------------------------------------- output
def write_report(report: Report, out_dir: str | Path, log_artifacts: bool = True) -> dict[str, Path]:
    """Write table-<name>.{md,csv,html} into `out_dir`; log them to the sweep's parent run when there is one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table-{report.spec.name}"
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("html", to_html)):
        paths[ext] = out / f"{stem}.{ext}"
        paths[ext].write_text(render(report), encoding="utf-8")
    if log_artifacts and report.parent_run_id:
        _log_artifacts(report.tracking_uri, report.parent_run_id, list(paths.values()))
    return paths


def _log_artifacts(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """Attach `paths` to the run under report/.

    Sweeps write through a local `mlflow server` (srprior.tracking), so their runs' artifact URIs are
    mlflow-artifacts:/<path>, which only a server can resolve; reading the SQLite store directly, we put the files
    where that server keeps them (<store folder>/mlartifacts/<path>) instead of starting one.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    artifact_uri = client.get_run(run_id).info.artifact_uri
    if artifact_uri.startswith("mlflow-artifacts:") and tracking_uri.startswith("sqlite:///"):
        store_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
        target = artifacts_dir(store_dir) / urlparse(artifact_uri).path.lstrip("/") / ARTIFACT_DIR
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copyfile(path, target / path.name)
        return
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)


def resolve_tracking_uri(cli_value: str | None, output_dir: str) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the platform's default store under `output_dir`."""
    return cli_value or user_tracking_uri() or default_tracking_uri(output_dir)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a thesis table from MLflow runs (Markdown, CSV, HTML)")
    p.add_argument("--table", required=True, help="thesis table, e.g. 4.2 (see srprior.search_spaces.TABLES)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else the store under --output-dir)")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="platform output folder holding the default store")
    p.add_argument("--out", default=None, help="folder for the report files (default: <output-dir>/reports)")
    p.add_argument("--experiment", default=None, help="read this MLflow experiment instead of srprior/table-<t>")
    p.add_argument("--sweep", default="latest",
                   help="'latest' (default): the newest sweep with runs; 'all': every run; or a sweep id")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        spec = get_table(args.table)
        tracking_uri = resolve_tracking_uri(args.tracking_uri, args.output_dir)
        report = build_report(spec, tracking_uri, args.experiment, args.sweep)
    except (KeyError, ReportError) as exc:
        print(f"srprior report: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    paths = write_report(report, args.out or Path(args.output_dir, "reports"))
    print(to_markdown(report))
    where = f"logged to run {report.parent_run_id} under {ARTIFACT_DIR}/" if report.parent_run_id else \
        "no sweep parent run to log them to"
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({where})", file=sys.stderr)
    return 0
