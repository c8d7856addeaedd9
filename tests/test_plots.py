"""Summary plot of a sweep: every table spec and a search, from reports built by srprior.report.model.summarize on
hand-made values; the dots drawn are the values given, at the λ_AP of their row."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from srprior.report.plots import lambdas, plotted_metrics, summary_figure, summary_plot
from srprior.report.model import Report, summarize, with_logged_benchmarks
from srprior.search_spaces import TABLES
from srprior.search_spaces.spec import Row, TableSpec


def _report(spec: TableSpec, metrics: tuple[str, ...], seeds: int = 2, skip: str | None = None) -> Report:
    """Distinct values per (row, seed, metric); the row `skip` has no runs."""
    values = {row.id: {s: {m: 30.0 + i + s / 10 + k / 100 for k, m in enumerate(metrics)} for s in range(seeds)}
              for i, row in enumerate(spec.rows) if row.id != skip}
    spec = with_logged_benchmarks(spec, values)
    return Report(spec, "sqlite:///x.db", "s-1", None, summarize(spec, values))


def _drawn(fig, metric: str, row_id: str) -> np.ndarray:
    (dots,) = [c for ax in fig.axes for c in ax.collections if c.get_gid() == f"{metric}|{row_id}"]
    return dots.get_offsets()


@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_plots_every_seed_value(name, tmp_path):
    spec = TABLES[name]
    embedded = name in ("4.2", "smoke", "readings")  # as a sweep without benchmark data logs them
    metrics = ("psnr_embedded", "ssim_embedded", "di") if embedded else spec.metrics
    report = _report(spec, metrics, skip=spec.rows[-1].id)
    out = summary_plot(report, tmp_path / "plots" / "summary.png")
    with Image.open(out) as png:
        assert png.format == "PNG" and 400 <= png.width <= 2000 and 150 <= png.height <= 2000
    shown = plotted_metrics(report)
    assert shown[0] == ("psnr_embedded" if embedded else next(m for m in spec.metrics if "psnr" in m))
    assert ("di" in shown) == ("di" in metrics)
    lam = lambdas(report)
    assert (lam is not None) == (name == "4.2")  # the only table whose rows vary λ_AP alone
    fig = summary_figure(report)
    for metric in shown:
        for r in report.rows:
            if r.row.id == spec.rows[-1].id:
                assert not any(c.get_gid() == f"{metric}|{r.row.id}" for ax in fig.axes for c in ax.collections)
                continue
            xy = _drawn(fig, metric, r.row.id)
            assert list(xy[:, 1 if lam else 0]) == list(r.cells[metric].values)
            if lam and lam[r.row.id] > 0:
                assert np.allclose(np.log10(xy[:, 0]), np.log10(lam[r.row.id]), atol=0.06)


def test_lambda_sweep_draws_means_and_puts_the_baseline_at_zero():
    report = _report(TABLES["4.2"], ("psnr_embedded", "di"), seeds=3)
    fig = summary_figure(report)
    edsr = [r for r in report.rows if r.row.group == "EDSR-T"]
    (ax,) = [a for a in fig.axes if a.get_title() == "EDSR-T" and a.get_ylabel().startswith("Embedded PSNR")]
    (mean,) = [line for line in ax.lines if line.get_gid() == "psnr_embedded|mean"]
    assert np.allclose(mean.get_ydata(), [r.cells["psnr_embedded"].mean for r in edsr[1:]])
    assert np.allclose(mean.get_xdata(), [r.row.overrides["lambda_ap"] for r in edsr[1:]])
    zero = _drawn(fig, "psnr_embedded", "edsr-t/baseline")[:, 0]
    assert zero.max() < 1e-4 and [t.get_text() for t in ax.get_xticklabels()][:2] == ["0", "1e-4"]


def test_a_search_report_plots_its_objective():
    rows = tuple(Row(f"cfg-{i}", "edsr-t", f"λ_AP={lam:.2e}", {}, baseline=None if i == 0 else "cfg-0")
                 for i, lam in enumerate((1e-4, 3e-3, 2e-5)))
    spec = TableSpec("search-edsr-t", "Optuna search edsr-t", "3 configurations", ("val/psnr",), rows)
    report = _report(spec, ("psnr_embedded", "ssim_embedded", "val/psnr"), seeds=3)
    assert plotted_metrics(report) == ("psnr_embedded", "val/psnr") and lambdas(report) is None
    fig = summary_figure(report)
    assert list(_drawn(fig, "val/psnr", "cfg-2")[:, 0]) == list(report.rows[2].cells["val/psnr"].values)


def test_nothing_to_plot_is_an_error():
    report = _report(TABLES["smoke"], ("ssim_set5",))
    with pytest.raises(ValueError, match="no PSNR or DI values"):
        plotted_metrics(report)
