"""The result model of a table: its cells read from MLflow (one value per row × seed × metric), summarized as
mean ± sample std over seeds with a test against the row's baseline, the claims evaluated over them.

Each cell is our mean ± sample std over seeds (ddof=1), marked † / ‡ when the test against the row's baseline
gives p < 0.05 / 0.01: the paired t-test over the seeds both rows ran (a seed fixes initial weights and patch
stream in every row, so the per-seed difference cancels the seed's luck), Welch's when fewer than 2 seeds
match; each cell records which. Bold: the best mean of its column within the model group. Renderers
(srprior.report.render), plots and files (srprior.report.write) read only this model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from srprior import contracts, tracking
from srprior.errors import UserError
from srprior.report.names import column_name
from srprior.report.setting import caption, run_params, setting
from srprior.search_spaces.claims import CLAIMS_BY_TABLE, evaluate_claims
from srprior.search_spaces.spec import EMBEDDED_METRICS, Row, TableSpec

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
    test: str | None = None  # "paired" or "welch": the test behind p_value and mde

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
    trained: str = ""  # the preset its runs trained ("": none ran)

    @property
    def group_label(self) -> str:
        """The row's group, with the preset actually trained when it is not the thesis's ("EDSR-T → edsr-t-micro")."""
        if self.trained and self.trained != self.row.overrides.get("preset"):
            return f"{self.row.group} → {self.trained}"
        return self.row.group


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
    caption: str = ""  # the budget's caption with the steps and seeds that ran (srprior.report.setting)
    control: str | None = None  # the metric of HardCases-R's control tiles, when the runs logged it


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
    ran: dict[str, list[dict[str, str]]] = {row.id: [] for row in spec.rows}  # preset and schedule per run
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
        ran.setdefault(row_id, []).append(run_params(run.data.params))
        region_sets.add(run.data.tags.get(contracts.REGION_SET, "unrecorded"))
        for m, v in run.data.metrics.items():
            if m.startswith(contracts.BICUBIC):
                bicubic.setdefault(m.removeprefix(contracts.BICUBIC), []).append(float(v))
    counts["bicubic"] = tuple((m, math.fsum(v) / len(v)) for m, v in bicubic.items())
    counts["region_sets"] = tuple(sorted(region_sets))
    counts["failed_rows"] = frozenset(failures)
    counts["ran"] = ran
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
              failed_rows: frozenset[str] = frozenset(), trained: dict[str, str] | None = None
              ) -> tuple[RowResult, ...]:
    """Cells with p-values (paired over matched seeds, else Welch: srprior.stats.compare) and the minimum
    detectable effect against each row's baseline, and the best mean per column within each group, among rows
    with no failed run and not below `bicubic` (a model worse than bicubic upscaling, or a row whose failed
    seeds are missing from its mean, is never "best"); `trained`: row id -> the preset its runs trained."""
    from srprior import stats

    def per_metric(row_id: str, metric: str) -> dict[int, float]:
        runs = values.get(row_id, {})
        return {s: runs[s][metric] for s in sorted(runs) if metric in runs[s]}

    results = []
    for row in spec.rows:
        cells = {}
        for metric in spec.metrics:
            ours = per_metric(row.id, metric)
            p_value = mde = test = None
            if row.baseline is not None:
                base = per_metric(row.baseline, metric)
                if len(set(ours) & set(base)) >= 2 or (len(ours) >= 2 and len(base) >= 2):
                    comp = stats.compare(base, ours)  # no spread at all: p is nan (no t statistic)
                    p_value = comp.p if math.isfinite(comp.p) else None
                    mde, test = stats.comparison_mde(comp), comp.test
                    mde = mde if math.isfinite(mde) else None
            cells[metric] = Cell(tuple(ours.values()), row.thesis.get(metric), p_value, mde=mde, test=test)
        n = expected[row.id] if expected else len(spec.row_seeds(row))
        results.append(RowResult(row, tuple(sorted(values.get(row.id, {}))), n, cells, (trained or {}).get(row.id, "")))
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
                 readings: dict[str, str] | None = None, correction: str = "holm", budget: str | None = None) -> Report:
    """The table `spec` over the planned `cells` (row id, seed, trial key) of a sweep or a budget; `readings`
    (srprior.schema.readings_in_force of its trials) go into the header; the claims' p are adjusted by
    `correction` (srprior.stats.adjust) over this table's claims; `budget` (None: the sweep's, from its parent
    run's options) names the caption, filled with the steps and seeds that ran."""
    values, counts = collect(spec, tracking_uri, cells, sweep_id)
    failed_rows, ran = counts.pop("failed_rows"), counts.pop("ran")
    spec = with_logged_benchmarks(spec, values)
    expected = {row.id: sum(1 for r, _, _ in cells if r == row.id) for row in spec.rows}
    kept = {row.id for row in spec.rows if expected[row.id]}
    spec = replace(spec, rows=tuple(replace(row, baseline=row.baseline if row.baseline in kept else None)
                                    for row in spec.rows if row.id in kept))
    claim_values, runs_setting, stand_in, control = claim_inputs(values, ran)
    claims = evaluate_claims(CLAIMS_BY_TABLE.get(spec.name, ()), claim_values, correction, runs_setting,
                             {HC: control} if control else None)
    table = summarize(spec, values, expected, dict(counts["bicubic"]), failed_rows, dict(runs_setting.trained))
    if budget is None and parent_run_id is not None:
        budget = sweep_budget(tracking_uri, parent_run_id)
    return Report(spec, tracking_uri, sweep_id, parent_run_id, table, claims,
                  stand_in, tuple((readings or {}).items()), correction=correction,
                  caption=caption(budget, {r: ran.get(r, []) for r in kept}), control=control, **counts)


def claim_inputs(values: dict[str, dict[int, dict[str, float]]], ran: dict) -> tuple[dict, Any, str | None,
                                                                                  str | None]:
    """What a table's claims are tested on: the values with HardCases' stand-in applied, the runs' setting
    (preset, schedule, measured metric: the proxy wording), the stand-in and the control metric. One place for
    build_report and the sequential design's looks (srprior.sweep.sequential)."""
    claim_values, stand_in, control = _claim_values(values)
    names = {m: column_name(m) for m in (stand_in, control) if m}
    return claim_values, setting(ran, {HC: stand_in} if stand_in else {}, names), stand_in, control


def sweep_budget(tracking_uri: str, run_id: str) -> str | None:
    """The budget a sweep ran under (its parent run's options), None when it recorded none."""
    import json

    options = tracking.client(tracking_uri).get_run(run_id).data.tags.get(contracts.OPTIONS_TAG)
    return json.loads(options).get("budget") if options else None


HC = "psnr_hardcases"


def _claim_values(values: dict[str, dict[int, dict[str, float]]]) -> tuple[dict, str | None, str | None]:
    """The thesis states most claims on HardCases, which is not public: without it, a claim on HardCases is
    tested on HardCases-R (rebuilt), else on the embedded default, and the report says which; on HardCases-R,
    also the metric of its control tiles when the runs logged it."""
    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    if HC in logged:
        return values, None, None
    stand_in = next((m for m in ("psnr_hardcases_r", "psnr_embedded") if m in logged), None)
    if stand_in is None:
        return values, None, None
    control = contracts.CONTROL_METRIC if stand_in == "psnr_hardcases_r" and contracts.CONTROL_METRIC in logged \
        else None
    swapped = {row: {seed: {**m, HC: m[stand_in]} if stand_in in m else m for seed, m in runs.items()}
               for row, runs in values.items()}
    return swapped, stand_in, control


def with_logged_benchmarks(spec: TableSpec, values: dict[str, dict[int, dict[str, float]]]) -> TableSpec:
    """`spec` with leading columns for what the runs logged but the thesis has no column for (the embedded
    default's PSNR/SSIM, when a sweep ran without benchmark data; HardCases-R, the rebuilt set, never under
    the thesis's HardCases column), so such sweeps still show our numbers."""
    logged = {m for runs in values.values() for metrics in runs.values() for m in metrics}
    extra = tuple(m for m in (*EMBEDDED_METRICS, *contracts.REBUILT_METRICS) if m in logged and m not in spec.metrics)
    return replace(spec, metrics=(*extra, *spec.metrics)) if extra else spec
