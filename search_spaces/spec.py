"""Declarative thesis tables: a table is rows of trial-schema overrides plus the numbers the thesis printed.

A `TableSpec` is data, not code: the planner (srprior.plan) turns `cells()` into trials (one per row and seed,
each a srprior.schema.Trial), the report finds their runs by content and prints them beside `Row.thesis`. Every
override is checked by the trial schema's own rules when the table module is imported, naming the table, the
row and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from srprior.contracts import (BENCH_METRICS, BENCHMARKS, EMBEDDED_METRICS, FINAL_METRICS, OBJECTIVE,
                               REGION_METRICS, SELECTOR_SEEDS, table_experiment)
from srprior.schema import trial_config
from srprior.schema_fields import is_int as _is_int
from srprior.schema_fields import is_number as _is_number

__all__ = ["BENCH_METRICS", "BENCHMARKS", "EMBEDDED_METRICS", "REGION_METRICS", "METRICS", "Row", "TableSpec",
           "Reference", "bench", "parse_cells", "baseline_row", "prior_row"]

METRICS = (*FINAL_METRICS, OBJECTIVE)
"""Every table column must be a metric the trainer logs (srprior.contracts); OBJECTIVE for search reports."""

THESIS_DEFAULTS: dict[str, Any] = {"scale": 2, "lambda_ap": 1e-4, "w": "sim", "n_ssr": 1, "scenario": "local"}
"""§4.4–4.5: ×2 SR, λ_AP = 1e-4, w = Sim, one SSR, Scenario 1 — every row starts from these."""

DEFAULT_SEEDS = (0, 1, 2, 3)  # "averaged over 4 different random seeds"


def validate_overrides(overrides: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError naming `where` and the field: the trial schema's own rules (srprior.schema)."""
    trial_config(where, **overrides)


def _check_seeds(seeds: Any, where: str, selectors: bool = False) -> tuple[int, ...]:
    """Distinct seeds >= 0; below SELECTOR_SEEDS[0] for a compared table, inside SELECTOR_SEEDS for selectors."""
    seeds = tuple(seeds)
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: seeds {seeds!r} must be a non-empty tuple of distinct integers >= 0")
    reserved = [s for s in seeds if s >= SELECTOR_SEEDS[0]]
    if selectors and len(reserved) < len(seeds):
        raise ValueError(f"{where}: selector seeds {seeds!r} must be >= {SELECTOR_SEEDS[0]} (reserved for them)")
    if reserved and not selectors:
        raise ValueError(f"{where}: seeds {reserved} are reserved for the HardCases-R selectors (>= "
                         f"{SELECTOR_SEEDS[0]}); a compared table must not run them (fewer --seeds)")
    return seeds


@dataclass(frozen=True)
class Row:
    """One table row: a model/setting (`overrides` on top of the table defaults) run once per seed.

    thesis: metric -> (mean, std) exactly as printed in the thesis. baseline: id of the row this one is
    compared against (Welch's t-test); None for baseline rows. seeds: per-row override of the table's seeds.
    """

    id: str
    group: str
    label: str
    overrides: dict[str, Any]
    thesis: dict[str, tuple[float, float]] = field(default_factory=dict)
    baseline: str | None = None
    seeds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or any(c.isspace() for c in self.id):
            raise ValueError(f"row id {self.id!r} must be a non-empty string without spaces")
        where = f"row {self.id!r}"
        validate_overrides(self.overrides, where)
        for metric, value in self.thesis.items():
            if metric not in METRICS:
                raise ValueError(f"{where}: thesis metric {metric!r} is not one of {', '.join(METRICS)}")
            if len(value) != 2 or not all(_is_number(v) for v in value) or value[1] < 0:
                raise ValueError(f"{where}: thesis[{metric!r}]={value!r} must be (mean, std) with std >= 0")
        object.__setattr__(self, "overrides", dict(self.overrides))
        object.__setattr__(self, "thesis", {m: (float(a), float(b)) for m, (a, b) in self.thesis.items()})
        if self.seeds is not None:
            object.__setattr__(self, "seeds", _check_seeds(self.seeds, where))


@dataclass(frozen=True)
class Reference:
    """A published number the thesis prints for comparison (e.g. Lim et al.'s EDSR in Table 4.8); never trained."""

    group: str
    label: str
    values: dict[str, float]


@dataclass(frozen=True)
class TableSpec:
    """A thesis table: rows × seeds trials, the metric columns and the thesis's numbers.

    Runs are found by content (srprior.schema.Trial.key), not by table: a row whose science equals another
    table's row (Table 4.7 re-evaluates Table 4.2's models) reuses that row's runs.
    """

    name: str
    title: str
    description: str
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    defaults: dict[str, Any] = field(default_factory=lambda: dict(THESIS_DEFAULTS))
    references: tuple[Reference, ...] = ()
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)  # budget name -> science fields it changes
    selectors: bool = False  # HardCases-R selector baselines on SELECTOR_SEEDS, never compared (search_spaces/selectors.py)

    def __post_init__(self) -> None:
        where = f"table {self.name!r}"
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "seeds", _check_seeds(self.seeds, where, self.selectors))
        object.__setattr__(self, "defaults", dict(self.defaults))
        validate_overrides(self.defaults, f"{where} defaults")
        for budget, fields_ in self.budgets.items():
            validate_overrides(fields_, f"{where} budget {budget!r}")
        for row in self.rows:
            validate_overrides({**self.defaults, **row.overrides}, f"{where} row {row.id!r}")
        if not self.rows:
            raise ValueError(f"{where}: has no rows")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise ValueError(f"{where}: metrics {bad or '()'} must be among {', '.join(METRICS)}")
        ids = [row.id for row in self.rows]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"{where}: duplicate row id(s) {dupes}")
        for row in self.rows:
            if row.baseline is not None and (row.baseline not in ids or row.baseline == row.id):
                raise ValueError(f"{where}: row {row.id!r} names baseline {row.baseline!r}, which is not "
                                 f"another row of this table (rows: {', '.join(ids)})")
            extra = sorted(set(row.thesis) - set(self.metrics))
            if extra:
                raise ValueError(f"{where}: row {row.id!r} has thesis numbers for {extra}, not table columns")
        for ref in self.references:
            extra = sorted(set(ref.values) - set(self.metrics))
            if extra:
                raise ValueError(f"{where}: reference {ref.label!r} has values for {extra}, not table columns")

    @property
    def experiment(self) -> str:
        """MLflow experiment of this table's sweeps and of the trial runs they create."""
        return table_experiment(self.name)

    def row(self, row_id: str) -> Row:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise KeyError(f"table {self.name!r} has no row {row_id!r}; rows: {', '.join(r.id for r in self.rows)}")

    def row_seeds(self, row: Row) -> tuple[int, ...]:
        return row.seeds if row.seeds is not None else self.seeds

    def cells(self, seeds: int | Sequence[int] | None = None,
              rows: Sequence[str] | None = None) -> list[tuple[Row, int, dict[str, Any]]]:
        """(row, seed, flat science overrides = table defaults + the row's) for every trial of the table.

        seeds: an int n gives each row n seeds: its own first, then the next unused integers (so asking for more
        seeds adds seeds, and the content-addressed runs of the old ones are reused); a sequence replaces every
        row's seeds.
        rows: ids of the rows to keep (table order is preserved).
        """
        if rows is not None:
            wanted = [self.row(r).id for r in rows]  # raises on an unknown id
            selected = [row for row in self.rows if row.id in wanted]
        else:
            selected = list(self.rows)
        if seeds is not None and _is_int(seeds) and seeds < 1:
            raise ValueError(f"table {self.name!r}: seeds={seeds} must keep at least one seed per row")
        out = []
        for row in selected:
            if seeds is None:
                row_seeds = self.row_seeds(row)
            elif _is_int(seeds):  # the row's seeds first, then the next unused integers (more seeds for power)
                base = self.row_seeds(row)
                start = SELECTOR_SEEDS[0] if self.selectors else 0
                row_seeds = (*base, *(s for s in range(start, start + len(base) + seeds) if s not in base))[:seeds]
            else:
                row_seeds = seeds
            row_seeds = _check_seeds(row_seeds, f"table {self.name!r} seeds", self.selectors)
            out += [(row, seed, {**self.defaults, **row.overrides}) for seed in row_seeds]
        return out


def parse_cells(metrics: Sequence[str], text: str) -> dict[str, tuple[float, float]]:
    """`"37.42±0.0553 0.9585±0.0001 ..."` -> {metric: (mean, std)} in `metrics` order: tables read like the thesis."""
    cells = text.split()
    if len(cells) != len(metrics) or not all(c.count("±") == 1 for c in cells):
        raise ValueError(f"expected {len(metrics)} 'mean±std' cells for {list(metrics)}, got {text!r}")
    return {m: (float(c.split("±")[0]), float(c.split("±")[1])) for m, c in zip(metrics, cells)}


def bench(text: str) -> dict[str, tuple[float, float]]:
    """Thesis cells for the 10 benchmark columns (Set5 … HardCases, PSNR then SSIM)."""
    return parse_cells(BENCH_METRICS, text)


def baseline_row(group: str, preset: str, thesis: dict[str, tuple[float, float]],
                 seeds: tuple[int, ...] | None = None, **overrides: Any) -> Row:
    """The model trained without the prior (λ_AP = 0); id '<preset>/baseline'."""
    return Row(f"{preset}/baseline", group, "Baseline", {"preset": preset, "lambda_ap": 0.0, **overrides},
               thesis, None, seeds)


def prior_row(group: str, preset: str, suffix: str, label: str, thesis: dict[str, tuple[float, float]],
              seeds: tuple[int, ...] | None = None, **overrides: Any) -> Row:
    """The same model trained with the prior (table defaults + `overrides`); id '<preset>/<suffix>',
    compared against '<preset>/baseline'."""
    return Row(f"{preset}/{suffix}", group, label, {"preset": preset, **overrides}, thesis,
               f"{preset}/baseline", seeds)
