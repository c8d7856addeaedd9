"""Declarative thesis tables: a table is rows of trial-config overrides plus the numbers the thesis printed.

A `TableSpec` is data, not code: the sweep turns `trial_configs()` into Ray trials (one per row and seed), the
report groups the resulting MLflow runs back by row and prints them beside `Row.thesis`. Validation happens at
construction so a typo in a table module fails on import, naming the table, the row and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = ("local", "global", "random-local", "random-global", "arbitrary")
"""Thesis Fig. 4.4: Scenario 1 local SSR, 2 global SSR, 3 random local region, 4 random global region;
"arbitrary" = SSRs anywhere in the image (Table 4.4's rows marked *)."""

TRIAL_KEYS = ("preset", "scale", "lambda_ap", "w", "n_ssr", "scenario", "poi_size", "weight_decay", "lr")
"""Keys a row may override; the trainer's trial config accepts these (plus table, row, seed)."""

BENCHMARKS = ("set5", "set14", "bsd100", "urban100", "hardcases")
BENCH_METRICS = tuple(f"{kind}_{bench}" for bench in BENCHMARKS for kind in ("psnr", "ssim"))
REGION_METRICS = ("psnr_total", "psnr_ssr", "psnr_poi")  # Table 4.7: HardCases PSNR on the image / SSRs / PoIs
EMBEDDED_METRICS = ("psnr_embedded", "ssim_embedded")  # sweeps without benchmark data (no thesis column)
METRICS = (*BENCH_METRICS, "di", *REGION_METRICS, *EMBEDDED_METRICS)
"""Final metrics the trainer logs (CONTRACT); every table column must be one of them."""

THESIS_DEFAULTS: dict[str, Any] = {"scale": 2, "lambda_ap": 1e-4, "w": "sim", "n_ssr": 1, "scenario": "local"}
"""§4.4–4.5: ×2 SR, λ_AP = 1e-4, w = Sim, one SSR, Scenario 1 — every row starts from these."""

DEFAULT_SEEDS = (0, 1, 2, 3)  # "averaged over 4 different random seeds"


def validate_overrides(overrides: Mapping[str, Any], where: str) -> None:
    """Raise ValueError naming `where` and the field when a trial-config override is unknown or out of range."""
    unknown = sorted(set(overrides) - set(TRIAL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown trial-config key(s) {unknown}; allowed: {', '.join(TRIAL_KEYS)}")
    for key, value in overrides.items():
        problem = _check_value(key, value)
        if problem:
            raise ValueError(f"{where}: {key}={value!r} {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(key: str, value: Any) -> str | None:
    """The reason `value` is invalid for `key`, or None."""
    if key == "preset":
        return None if isinstance(value, str) and value else "must be a model preset name (e.g. 'edsr-t')"
    if key == "scale":
        return None if _is_int(value) and value in (2, 3, 4) else "must be 2, 3 or 4"
    if key in ("lambda_ap", "weight_decay"):
        return None if _is_number(value) and value >= 0 else "must be a finite number >= 0"
    if key == "lr":
        return None if _is_number(value) and value > 0 else "must be a finite number > 0"
    if key == "w":
        ok = value == "sim" or (_is_number(value) and 0 < value <= 1)
        return None if ok else "must be 'sim' (the SSM similarity) or a number in (0, 1] (a target norm ratio)"
    if key == "n_ssr":
        return None if _is_int(value) and value >= 1 else "must be an integer >= 1"
    if key == "poi_size":
        return None if _is_int(value) and value >= 1 and value % 2 else "must be an odd integer >= 1 (centred)"
    if key == "scenario":
        return None if value in SCENARIOS else f"must be one of {', '.join(SCENARIOS)}"
    return None


def _check_seeds(seeds: Any, where: str) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or not all(_is_int(s) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{where}: seeds {seeds!r} must be a non-empty tuple of distinct integers >= 0")
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
    """A thesis table: rows × seeds trials, the metric columns, and where its runs live in MLflow.

    source: for evaluation-only tables (4.7) the table whose trained models (rows with the same ids) this one
    re-evaluates; the report reads the source's runs when this table has none of its own.
    """

    name: str
    title: str
    description: str
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    defaults: dict[str, Any] = field(default_factory=lambda: dict(THESIS_DEFAULTS))
    references: tuple[Reference, ...] = ()
    source: str | None = None

    def __post_init__(self) -> None:
        where = f"table {self.name!r}"
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "seeds", _check_seeds(self.seeds, where))
        object.__setattr__(self, "defaults", dict(self.defaults))
        validate_overrides(self.defaults, f"{where} defaults")
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
        """MLflow experiment of this table's trials (CONTRACT: srprior/table-<name>)."""
        return f"srprior/table-{self.name}"

    def row(self, row_id: str) -> Row:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise KeyError(f"table {self.name!r} has no row {row_id!r}; rows: {', '.join(r.id for r in self.rows)}")

    def row_seeds(self, row: Row) -> tuple[int, ...]:
        return row.seeds if row.seeds is not None else self.seeds

    def trial_configs(self, seeds: int | Sequence[int] | None = None,
                      rows: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One flat trial config per (row, seed): table, row, seed + defaults + the row's overrides.

        seeds: an int n keeps each row's first n seeds (a smoke budget); a sequence replaces every row's seeds.
        rows: ids of the rows to keep (table order is preserved).
        """
        if rows is not None:
            wanted = [self.row(r).id for r in rows]  # raises on an unknown id
            selected = [row for row in self.rows if row.id in wanted]
        else:
            selected = list(self.rows)
        if seeds is not None and _is_int(seeds) and seeds < 1:
            raise ValueError(f"table {self.name!r}: seeds={seeds} must keep at least one seed per row")
        configs = []
        for row in selected:
            if seeds is None:
                row_seeds = self.row_seeds(row)
            elif _is_int(seeds):
                row_seeds = self.row_seeds(row)[:seeds]
            else:
                row_seeds = _check_seeds(seeds, f"table {self.name!r} trial_configs")
            for seed in row_seeds:
                configs.append({"table": self.name, "row": row.id, "seed": seed, **self.defaults, **row.overrides})
        return configs


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
