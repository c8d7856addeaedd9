"""A sweep's summary plot: every seed of every row at a glance, next to the table the report writes.

Two shapes, chosen from the table's rows:
* λ_AP sweeps (rows of a model group differ only in λ_AP, with two or more non-zero values somewhere, like
  Table 4.2): PSNR and DI against λ_AP on a log axis, one column per model group; every seed a dot, the mean ±
  std a line with error bars, the baseline (λ_AP = 0) a band of its mean ± std and its seeds at "0".
* any other table (scenarios, w, N_SSR, regularisers, readings, searches): one dot row per table row, seeds as
  dots and mean ± std as a bar, with the group's baseline mean as a dashed line.

The PSNR panel shows the report's first PSNR column that has values (the embedded default's on a smoke sweep);
a search adds its objective (validation PSNR), and DI is added when it was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from srprior.contracts import DI, OBJECTIVE
from srprior.method.figures import canvas, lambda_text, save
from srprior.report.model import Report
from srprior.report.names import column_name

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
JITTER = 0.05  # seeds of one row spread over ± this many decades (λ) or row heights (dot rows)
ZERO_GAP = 0.7  # decades between the smallest λ_AP and the baseline's "0" position


@dataclass(frozen=True)
class Point:
    """One row's values of one metric, where they are drawn (x: λ_AP in λ plots; None in dot rows)."""

    row_id: str
    group: str
    label: str
    x: float | None
    values: tuple[float, ...]
    baseline: bool

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def plotted_metrics(report: Report) -> tuple[str, ...]:
    """The first PSNR column with values, the search objective and DI when they are columns with values."""
    def has_values(metric: str) -> bool:
        return any(r.cells[metric].values for r in report.rows)

    psnr = next((m for m in report.spec.metrics if "psnr" in m and has_values(m)), None)
    chosen = tuple(dict.fromkeys(m for m in (psnr, OBJECTIVE, DI) if m in report.spec.metrics and has_values(m)))
    if not chosen:
        raise ValueError(f"summary_plot: table {report.spec.name} has no PSNR or DI values to plot")
    return chosen


def lambdas(report: Report) -> dict[str, float] | None:
    """Row id -> λ_AP when the table is a λ_AP sweep (see the module docstring), else None."""
    spec = report.spec
    settings = {r.row.id: {**spec.defaults, **r.row.overrides} for r in report.rows}
    by_group: dict[str, set] = {}
    for r in report.rows:
        rest = {k: v for k, v in settings[r.row.id].items() if k != "lambda_ap"}
        by_group.setdefault(r.row.group, set()).add(repr(sorted(rest.items())))
    lam = {row_id: float(s.get("lambda_ap", 0.0)) for row_id, s in settings.items()}
    varied = any(len({lam[r.row.id] for r in report.rows if r.row.group == g and lam[r.row.id] > 0}) > 1
                 for g in by_group)
    return lam if varied and all(len(v) == 1 for v in by_group.values()) else None


def points(report: Report, metric: str, lam: dict[str, float] | None) -> list[Point]:
    """The rows that have values for `metric`, in table order."""
    return [Point(r.row.id, r.row.group, r.row.label, lam[r.row.id] if lam else None, r.cells[metric].values,
                  r.row.baseline is None)
            for r in report.rows if r.cells[metric].values]


def _spread(n: int) -> np.ndarray:
    return np.linspace(-JITTER, JITTER, n) if n > 1 else np.zeros(1)


def _axis_label(metric: str) -> str:
    return column_name(metric) + (" (dB)" if "psnr" in metric else "")


def _lambda_panel(ax, pts: list[Point], color: str, metric: str) -> None:
    base = [p for p in pts if p.baseline or p.x == 0]
    prior = sorted((p for p in pts if p not in base), key=lambda p: p.x)
    xs = [p.x for p in prior]
    zero = (min(xs) if xs else 1e-4) / 10**ZERO_GAP
    for p in base:
        ax.axhspan(p.mean - p.std, p.mean + p.std, color=color, alpha=0.13, linewidth=0)
        ax.axhline(p.mean, color=color, linestyle="--", linewidth=1.2)
        ax.scatter(zero * 10 ** _spread(len(p.values)), p.values, s=22, color=color, alpha=0.55,
                   edgecolors="none", gid=f"{metric}|{p.row_id}")
    for p in prior:
        ax.scatter(p.x * 10 ** _spread(len(p.values)), p.values, s=22, color=color, alpha=0.55,
                   edgecolors="none", gid=f"{metric}|{p.row_id}")
    if prior:
        line = ax.errorbar(xs, [p.mean for p in prior], yerr=[p.std for p in prior], color=color, marker="o",
                           markersize=4, linewidth=1.6, capsize=3)
        line.lines[0].set_gid(f"{metric}|mean")
    ax.set_xscale("log")
    if base and prior:  # the log axis has no 0: mark the break between the baseline and the smallest λ_AP
        ax.axvline(zero * 10 ** (ZERO_GAP / 2), color="#bbbbbb", linewidth=0.8, linestyle=":")
    ticks = ([zero] if base else []) + xs
    ax.set_xticks(ticks, ([("0")] if base else []) + [lambda_text(x) for x in xs], rotation=45 if len(xs) > 4 else 0)
    ax.minorticks_off()
    ax.set_xlim(zero / 10**0.35 if base else min(xs) / 10**0.35, max(xs + [zero]) * 10**0.35)
    ax.grid(axis="y", alpha=0.3)


def _lambda_figure(report: Report, metrics: tuple[str, ...], lam: dict[str, float]) -> Figure:
    groups = list(dict.fromkeys(r.row.group for r in report.rows))
    fig = canvas(max(420, 330 * len(groups)), 290 * len(metrics) + 150)
    axes = np.atleast_2d(fig.subplots(len(metrics), len(groups), squeeze=False))
    for i, metric in enumerate(metrics):
        pts = points(report, metric, lam)
        for j, group in enumerate(groups):
            ax, color = axes[i, j], COLORS[j % len(COLORS)]
            mine = [p for p in pts if p.group == group]
            if mine:
                _lambda_panel(ax, mine, color, metric)
            else:
                ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes, color="grey")
            if i == 0:
                ax.set_title(group, fontsize=11, color=color, fontweight="bold")
            if i == len(metrics) - 1:
                ax.set_xlabel("λ_AP")
            if j == 0:
                ax.set_ylabel(_axis_label(metric))
    keys = [Line2D([], [], color="grey", marker="o", linestyle="none", alpha=0.55, label="one seed"),
            Line2D([], [], color="grey", marker="o", markersize=4, label="mean ± std over seeds"),
            Patch(color="grey", alpha=0.25, label="baseline (λ_AP = 0): mean ± std")]
    fig.legend(handles=keys, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def _dot_figure(report: Report, metrics: tuple[str, ...]) -> Figure:
    rows = [r for r in report.rows if any(r.cells[m].values for m in metrics)]
    groups = list(dict.fromkeys(r.row.group for r in rows))
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}
    y = {r.row.id: i for i, r in enumerate(rows)}
    fig = canvas(260 + 330 * len(metrics), 34 * len(rows) + 170)
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        pts = points(report, metric, None)
        for p in pts:
            c = color[p.group]
            ax.scatter(p.values, y[p.row_id] + _spread(len(p.values)) * 4, s=22, color=c, alpha=0.55,
                       edgecolors="none", gid=f"{metric}|{p.row_id}")
            ax.errorbar(p.mean, y[p.row_id], xerr=p.std, color=c, marker="D", markersize=5, capsize=3,
                        linewidth=1.6)
        for group in groups:
            span = [y[r.row.id] for r in rows if r.row.group == group]
            base = [p for p in pts if p.group == group and p.baseline]
            if base:
                ax.vlines(base[0].mean, min(span) - 0.4, max(span) + 0.4, color=color[group], linestyle="--",
                          linewidth=1.1)
            ax.axhline(max(span) + 0.5, color="#cccccc", linewidth=0.8)
        ax.set_xlabel(_axis_label(metric))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(y.values()), [f"{r.row.group} · {r.row.label}" for r in rows], fontsize=9)
    for tick, r in zip(axes[0].get_yticklabels(), rows):
        tick.set_color(color[r.row.group])
    axes[0].set_ylim(len(rows) - 0.5, -0.5)  # table order, top to bottom
    keys = [Line2D([], [], color="grey", marker="o", linestyle="none", alpha=0.55, label="one seed"),
            Line2D([], [], color="grey", marker="D", markersize=5, label="mean ± std over seeds"),
            Line2D([], [], color="grey", linestyle="--", label="mean of the row † ‡ test against")]
    fig.legend(handles=keys, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig


def summary_figure(report: Report) -> Figure:
    """The summary plot as a matplotlib Figure (Agg canvas); artists of seed dots carry gid "metric|row id"."""
    metrics = plotted_metrics(report)
    lam = lambdas(report)
    fig = _lambda_figure(report, metrics, lam) if lam else _dot_figure(report, metrics)
    seeds = max(len(r.seeds) for r in report.rows)
    fig.suptitle(f"{report.spec.title}\n{len(report.rows)} rows, up to {seeds} seed(s) each"
                 + (f" · sweep {report.sweep_id}" if report.sweep_id else ""), fontsize=11)
    return fig


def summary_plot(report: Report, out_path: str | Path) -> Path:
    """Write the summary plot of `report` as a PNG (the sweep logs it to its parent MLflow run)."""
    return save(summary_figure(report), out_path)
