"""`srprior report` on a real MLflow sqlite store: runs logged the way the sweep logs them (CONTRACT: a parent
sweep run holding its options, trial runs tagged with their content key), numbers checked against numpy and
scipy."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from scipy import stats

from srprior import contracts
from srprior.cli import main
from srprior.report.cells import budget_cells, sweep_cells
from srprior.report.model import ReportError, build_report
from srprior.report.render import to_csv, to_html, to_markdown
from srprior.report.write import write_report
from srprior.search_spaces import get_table
from srprior.contracts import OPTIONS_TAG
from srprior import tracking
from srprior.tracking import artifacts_dir
from srprior.options import SweepOptions

SMOKE = get_table("smoke")
T46 = get_table("4.6")
BASE, OURS = "edsr-t-micro/baseline", "edsr-t-micro/lambda-1e-4"
SMOKE_OPTIONS = {"table": "smoke", "budget": "smoke", "seeds": 2}
# Per (row, seed): psnr_set5 / ssim_set5 / di. Ours clearly better on Set5 PSNR (‡), equal-ish on SSIM;
# Set14 only logged for seed 0 (n=1: no std, no test); BSD100, Urban100, HardCases never logged.
VALUES = {
    (BASE, 0): {"psnr_set5": 30.00, "ssim_set5": 0.9001, "di": 10.0, "psnr_set14": 28.0},
    (BASE, 1): {"psnr_set5": 30.10, "ssim_set5": 0.9003, "di": 11.0},
    (OURS, 0): {"psnr_set5": 31.00, "ssim_set5": 0.9000, "di": 14.0, "psnr_set14": 28.5},
    (OURS, 1): {"psnr_set5": 31.12, "ssim_set5": 0.9006, "di": 12.5},
}

# Table 4.2 runs that Table 4.7 reuses: its four rows (rnan-t/lambda-1e-4 missing) plus a 4.2-only row.
SOURCE_VALUES = {
    (row, seed): {"psnr_total": 32.0 + i + seed / 10, "psnr_ssr": 31.0 + i, "psnr_poi": 33.0 - seed}
    for i, row in enumerate(("edsr-t/baseline", "edsr-t/lambda-1e-4", "rnan-t/baseline", "rnan-t/lambda-1e-3"))
    for seed in (0, 1)
}
HC = "psnr_hardcases"
SOURCE_OPTIONS = {"table": "4.2", "budget": "short", "seeds": 2}  # smoke would make them the smoke table's trials


def log_sweep(client: MlflowClient, experiment_id: str, sweep_id: str, options: dict,
              values: dict[tuple[str, int], dict[str, float]], status: str = "FINISHED") -> str:
    """A parent sweep run (with the options that rebuild its plan) and one trial run per (row, seed), tagged
    with the content key the plan gives that cell — as the sweep and the worker log them."""
    from srprior.plan import make_plan, plan_readings

    table, plan = options["table"], make_plan(SweepOptions.of(options))
    keys = {(row, seed): key for row, seed, key in plan.cells[table]}
    params = {t.trial.key: {**t.trial.config.params(), "seed": str(t.trial.seed)} for t in plan.trials}
    parent = client.create_run(experiment_id, run_name=sweep_id, tags={
        contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep_id, OPTIONS_TAG: json.dumps(options)}).info.run_id
    record = {"cells": plan.cells[table], "readings": plan_readings(plan, table)}
    served = tracking.served_artifacts(client.tracking_uri, client.get_run(parent).info.artifact_uri)
    if served is None:
        client.log_dict(parent, record, contracts.CELLS_ARTIFACT)
    else:  # where the sweep's local server would have put it
        (served / contracts.CELLS_ARTIFACT).parent.mkdir(parents=True)
        (served / contracts.CELLS_ARTIFACT).write_text(json.dumps(record))
    for (row, seed), metrics in values.items():
        key = keys[(row, seed)]
        tags = {contracts.ROLE: "trial", contracts.RUN_KEY: key, contracts.CONFIG_HASH: key.split("-")[0],
                contracts.TABLE: table, contracts.ROW: row, contracts.SEED: str(seed),
                contracts.SWEEP_ID: sweep_id, contracts.PARENT: parent, contracts.REGION_SET: "embedded-crop256"}
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        client.log_batch(run_id, metrics=[Metric(k, v, 0, 100) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params[key].items()],
                         tags=[RunTag("mlflow.runName", f"{row}-s{seed}")])
        client.set_terminated(run_id, status)
    client.set_terminated(parent)
    return parent


def report_of(table: str, uri: str, sweep: str = "latest"):
    cells, sweep_id, parent, readings = sweep_cells(table, uri, sweep)
    return build_report(get_table(table), uri, cells, sweep_id, parent, readings)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store (creating it is the slow part) holding every test's runs: smoke with an old sweep s0
    (its runs are superseded by s1's newer runs of the same keys) and the latest sweep s1 with VALUES; Table 4.2
    runs that Table 4.7 reuses (SOURCE_VALUES); Table 4.6 through a server-like artifact location."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(SMOKE.experiment, artifact_location=(root / "smoke").as_uri())
    old = {key: {m: v - 5.0 for m, v in metrics.items()} for key, metrics in VALUES.items()}
    log_sweep(client, exp, "s0", SMOKE_OPTIONS, old)
    parent = log_sweep(client, exp, "s1", SMOKE_OPTIONS, VALUES)
    # a newer, failed rerun of seed 0: must not hide the finished run of the same key
    log_sweep(client, exp, "s2-failed", SMOKE_OPTIONS, {(BASE, 0): {"psnr_set5": 0.0}}, status="FAILED")
    exp = client.create_experiment(get_table("4.2").experiment, artifact_location=(root / "t42").as_uri())
    source_parent = log_sweep(client, exp, "s7", SOURCE_OPTIONS, SOURCE_VALUES)
    # As a sweep through `mlflow server` leaves it: artifact URIs mlflow-artifacts:/..., resolvable only by a server.
    exp = client.create_experiment(T46.experiment, artifact_location="mlflow-artifacts:/t46")
    log_sweep(client, exp, "s9", {"table": "4.6", "budget": "thesis", "seeds": 1},
              {(r.id, 0): {"psnr_set5": 30.0} for r in T46.rows})
    return uri, parent, source_parent


def cell(report, row_id, metric):
    return next(r for r in report.rows if r.row.id == row_id).cells[metric]


def test_numbers_match_numpy_and_scipy(store):
    uri, parent, _ = store
    report = report_of("smoke", uri, "s1")
    assert (report.sweep_id, report.parent_run_id, report.failed) == ("s1", parent, 0)
    for row in (BASE, OURS):
        for metric in ("psnr_set5", "ssim_set5", "di"):
            xs = np.array([VALUES[(row, s)][metric] for s in (0, 1)])
            c = cell(report, row, metric)
            assert c.n == 2
            assert c.mean == pytest.approx(xs.mean(), rel=1e-12)
            assert c.std == pytest.approx(xs.std(ddof=1), rel=1e-12)
            assert c.thesis == SMOKE.row(row).thesis.get(metric)
    for metric in ("psnr_set5", "ssim_set5", "di"):
        ours = [VALUES[(OURS, s)][metric] for s in (0, 1)]
        base = [VALUES[(BASE, s)][metric] for s in (0, 1)]
        expected = stats.ttest_rel(ours, base).pvalue  # both rows ran seeds 0 and 1: paired
        assert cell(report, OURS, metric).p_value == pytest.approx(expected, abs=1e-6)
        assert cell(report, OURS, metric).test == "paired"
        assert cell(report, BASE, metric).p_value is None  # baselines are not tested
    assert cell(report, OURS, "psnr_set5").p_value < 0.01 and cell(report, OURS, "psnr_set5").mark == "‡"
    assert cell(report, OURS, "ssim_set5").mark == ""
    # n = 1: a mean, no std, no test; never logged: nothing
    one = cell(report, OURS, "psnr_set14")
    assert (one.n, one.mean, one.std, one.p_value) == (1, 28.5, None, None)
    assert cell(report, OURS, "psnr_hardcases").n == 0 and cell(report, OURS, "psnr_hardcases").mean is None
    # bold: the best mean per column within the group
    assert cell(report, OURS, "psnr_set5").best and not cell(report, BASE, "psnr_set5").best
    assert cell(report, OURS, "ssim_set5").best and not cell(report, BASE, "ssim_set5").best
    assert cell(report, OURS, "di").best and not cell(report, BASE, "di").best


def test_markdown_csv_and_html_content(store):
    uri, _, _ = store
    report = report_of("smoke", uri, "s1")
    md = to_markdown(report)
    line = next(x for x in md.splitlines() if x.startswith("| EDSR-T | w/ ours"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "2/2"
    # Set5 PSNR: ours, mark, MDE (paired: the per-seed differences 1.00 and 1.02 dB), thesis
    assert cells[3] == "**31.06 ± 0.0849**‡ [MDE 0.16] (37.44 ± 0.0257)"
    assert "**Setting:** smoke budget: 100 steps, 2 seeds per row" in md and "paired t-test over the seeds" in md
    assert cells[5] == "**28.50 ± —** [n=1] (33.03 ± 0.0131)"  # Set14 PSNR from one seed
    assert cells[11] == "— (28.26 ± 0.0342)"  # HardCases PSNR: never logged
    assert cells[13].startswith("**13.25 ± 1.0607** [MDE ") and cells[13].endswith("] (—)")  # DI: p ≈ 0.1
    assert "| Group | Row | n | Set5 PSNR | Set5 SSIM |" in md and "sweep `s1`" in md
    assert "Readings in force: select_n=5 · local_geometry=window · similarity=clamp · l1_reduction=mean · " \
           "di_channels=abs-of-sum · extra_shave=0" in md

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert rows[0]["kind"] == "setting" and rows[0]["label"].startswith("smoke budget: 100 steps, 2 seeds per row")
    rows = rows[1:]
    assert len(rows) == 2 * len(SMOKE.metrics)
    r = next(x for x in rows if x["row"] == OURS and x["metric"] == "psnr_set5")
    assert float(r["mean"]) == pytest.approx(31.06) and float(r["thesis_mean"]) == 37.44
    assert float(r["p_value"]) == pytest.approx(cell(report, OURS, "psnr_set5").p_value)
    assert (r["significance"], r["best"], r["n"]) == ("‡", "1", "2")

    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not any(tag in page for tag in ("<link", "<script", "src=", "http://", "https://"))
    assert "thesis 37.44 ± 0.0257" in page and '<span class="best">31.06 ± 0.0849</span>' in page


def test_mde_is_the_effect_a_paired_test_detects_with_80_percent_power(store):
    """Independent of srprior.stats: the power of the paired t-test (n − 1 = 1 df, the spread of the per-seed
    differences) from scipy's noncentral t, solved for 0.8."""
    from scipy import optimize

    uri, _, _ = store
    report = report_of("smoke", uri, "s1")
    base = [VALUES[(BASE, s)]["psnr_set5"] for s in (0, 1)]
    ours = [VALUES[(OURS, s)]["psnr_set5"] for s in (0, 1)]
    se, df = np.std(np.subtract(ours, base), ddof=1) / np.sqrt(2), 1
    crit = stats.t.isf(0.025, df)

    def power(d: float) -> float:
        nc = d / se
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc)  # P(T < -c | nc) = P(T > c | -nc)

    expected = optimize.brentq(lambda d: power(d) - 0.8, 1e-9, 100.0)
    assert cell(report, OURS, "psnr_set5").mde == pytest.approx(expected, rel=1e-6)
    assert cell(report, BASE, "psnr_set5").mde is None  # baselines are not compared


def test_files_written_and_logged_to_the_parent_run(store, tmp_path):
    uri, parent, _ = store
    report = report_of("smoke", uri, "s1")
    paths = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["summary-smoke.png", "table-smoke.csv", "table-smoke.html",
                                                      "table-smoke.md"]
    assert paths["md"].read_text(encoding="utf-8") == to_markdown(report)
    client = MlflowClient(uri)
    logged = sorted(a.path for a in client.list_artifacts(parent, "report"))
    assert logged == ["report/summary-smoke.png", "report/table-smoke.csv", "report/table-smoke.html",
                      "report/table-smoke.md"]
    local = client.download_artifacts(parent, "report/table-smoke.csv", str(tmp_path))
    assert open(local, encoding="utf-8").read() == paths["csv"].read_text(encoding="utf-8")


def test_artifacts_of_a_server_written_sweep_go_where_mlflow_server_serves_them(store, tmp_path):
    """Runs a sweep wrote through `mlflow server` have mlflow-artifacts:/<path> URIs; reading the SQLite store
    without a server, the report puts the files at <store folder>/mlartifacts/<path>, which is what
    `mlflow server --artifacts-destination <store folder>/mlartifacts` (srprior.tracking) serves for <path>.
    (Starting a server here would cost ~10-20 s on CI; the mapping was checked once against a live server.)"""
    uri, _, _ = store
    report = report_of("4.6", uri)
    paths = write_report(report, tmp_path)
    artifact_uri = MlflowClient(uri).get_run(report.parent_run_id).info.artifact_uri
    assert artifact_uri == f"mlflow-artifacts:/t46/{report.parent_run_id}/artifacts"
    served = artifacts_dir(Path(uri.removeprefix("sqlite:///")).parent) / "t46" / report.parent_run_id / "artifacts"
    assert sorted(p.name for p in (served / "report").iterdir()) == [
        "summary-4.6.png", "table-4.6.csv", "table-4.6.html", "table-4.6.md"]
    assert (served / "report" / "table-4.6.md").read_text(encoding="utf-8") == paths["md"].read_text(encoding="utf-8")


def test_runs_are_found_by_content_newest_finished_first(store):
    """s0 and s1 trained the same keys: s1's newer runs answer; the failed rerun (s2-failed) is no value, and
    a report of the failed sweep itself says so; the latest sweep with options is s2-failed."""
    uri, _, _ = store
    old = report_of("smoke", uri, "s0")
    assert cell(old, BASE, "psnr_set5").mean == pytest.approx(30.05) and old.reused == 4
    latest = report_of("smoke", uri)
    assert latest.sweep_id == "s2-failed" and latest.reused == 4  # every answer comes from s1
    assert cell(latest, BASE, "psnr_set5").mean == pytest.approx(30.05)
    with pytest.raises(ReportError, match="no sweep 'nope' of table smoke"):
        report_of("smoke", uri, "nope")


def test_cli_prints_markdown_and_writes_files(store, tmp_path, capsys, monkeypatch):
    uri, _, _ = store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["report", "--table", "smoke", "--sweep", "s1", "--tracking-uri", uri, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("## Table smoke: Smoke") and "**31.06 ± 0.0849**‡" in out.out
    assert (tmp_path / "table-smoke.html").is_file() and "logged to run" in out.err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the environment is used when no flag is given
    assert main(["report", "--table", "smoke", "--out", str(tmp_path / "env")]) == 0


def test_missing_runs_give_a_clear_error(store, tmp_path, capsys):
    uri, _, _ = store
    with pytest.raises(ReportError) as info:
        build_report(get_table("4.3"), uri, budget_cells("4.3", "smoke", 1, ["steps=7"]))
    message = str(info.value)
    assert "no finished trial runs for table 4.3" in message and uri in message
    assert "srprior sweep --table 4.3" in message
    with pytest.raises(ReportError, match="no sweep of table 4.4 in"):
        sweep_cells("4.4", uri)
    assert main(["report", "--table", "4.3", "--tracking-uri", uri, "--out", str(tmp_path)]) == 2
    assert "srprior report: error: no sweep of table 4.3" in capsys.readouterr().err
    assert main(["report", "--table", "9.9", "--tracking-uri", uri]) == 2
    assert "unknown table '9.9'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/none/mlflow.db"
    with pytest.raises(ReportError, match=f"no MLflow store at {missing} \\(file missing\\)"):
        build_report(get_table("4.3"), missing, [])
    assert not any(tmp_path.iterdir())  # nothing written on error


def test_the_report_finds_the_sweeps_own_cells_after_a_default_changed(tmp_path, capsys):
    """A sweep records its cells (run keys) on its parent run; a default changed later (here: min_std, which every
    key includes) would make a re-planned report look for other keys, the recorded cells still find the runs."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(SMOKE.experiment, artifact_location=(tmp_path / "smoke").as_uri())
    then = {**SMOKE_OPTIONS, "set": ["min_std=0.03"]}  # the sweep's science under the defaults of its day
    parent = log_sweep(client, exp, "before", then, VALUES)
    client.set_tag(parent, OPTIONS_TAG, json.dumps(SMOKE_OPTIONS))  # re-planned by today's code: other keys
    cells, sweep_id, _, _ = sweep_cells("smoke", uri)
    assert sweep_id == "before" and cells == [tuple(c) for c in budget_cells("smoke", "smoke", 2, then["set"])]
    report = build_report(SMOKE, uri, cells, sweep_id)
    assert cell(report, BASE, "psnr_set5").n == 2 and not report.missing
    replanned, _, _, _ = sweep_cells("smoke", uri, replan=True)
    assert set(replanned).isdisjoint(cells)  # what re-planning would look for: nothing this sweep trained
    assert main(["report", "--table", "smoke", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 0
    assert "INCOMPLETE" not in capsys.readouterr().out


def test_table_4_7_reuses_table_4_2_runs_by_content(store):
    """Table 4.7 re-evaluates Table 4.2's models: its rows have 4.2's science, so 4.2's runs answer them."""
    uri, _, _ = store
    report = build_report(get_table("4.7"), uri, budget_cells("4.7", "short", 2, None))
    assert cell(report, "edsr-t/lambda-1e-4", "psnr_total").mean == pytest.approx(33.05)
    assert cell(report, "rnan-t/lambda-1e-4", "psnr_total").n == 0  # only 4.2's λ = 1e-3 row was logged
    assert cell(report, "rnan-t/baseline", "psnr_ssr").std == 0.0
    assert cell(report, "edsr-t/lambda-1e-4", "psnr_ssr").p_value is None  # both constant: no test
    assert report.missing == 2
    md = to_markdown(report)
    assert "| EDSR-T | Baseline | 2/2 | 32.0500 ± 0.0707 (32.2438 ± 0.1513) |" in md, md
    assert "| RNAN-T | w/ ours, λ_AP=1e-4 | 0/2 | — (32.5135 ± 0.0545) |" in md
    assert "INCOMPLETE: 0 failed and 2 unfinished or missing run(s)" in md
    assert "Image sets: region metrics (PSNR on SSR/PoI, Total) on embedded-crop256." in md  # the runs' tag


def test_benchmarks_without_a_thesis_column_lead_the_table(tmp_path):
    """Sweeps on the embedded default log psnr_embedded: the report shows it first, thesis columns after."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(SMOKE.experiment, artifact_location=(tmp_path / "a").as_uri())
    values = {(row, seed): {"psnr_embedded": 25.0 + seed + (row == OURS), "ssim_embedded": 0.8, "di": 3.0,
                            "psnr_total": 1.0}
              for row in (BASE, OURS) for seed in (0, 1)}
    log_sweep(client, exp, "e1", SMOKE_OPTIONS, values)
    report = report_of("smoke", uri)
    assert report.spec.metrics == ("psnr_embedded", "ssim_embedded", *SMOKE.metrics)
    assert cell(report, OURS, "psnr_embedded").mean == pytest.approx(26.5)
    assert cell(report, OURS, "psnr_embedded").best
    assert "Embedded PSNR" in to_markdown(report)


@pytest.fixture(scope="module")
def micro_runs(tmp_path_factory):
    """Real training without Ray (the worker's function, micro presets, smoke budget, embedded default):
    Table 4.2's EDSR-T baseline and λ_AP = 5e-3 rows, 2 seeds each, logged to a real store by the worker."""
    from srprior.plan import make_plan
    from srprior.schema import RunContext
    from helpers import train_trial
    from srprior.trainers.worker import LocalSession

    root = tmp_path_factory.mktemp("micro")
    uri = f"sqlite:///{root}/mlflow.db"
    opts = {"table": "4.2", "budget": "smoke", "rows": "edsr-t/baseline,edsr-t/lambda-5e-3", "set": ["di=false"]}
    plan = make_plan(SweepOptions.of(opts))
    finals = {}
    for t in plan.trials:
        ctx = RunContext(tracking_uri=uri, experiment="srprior/table-4.2", ckpt_every=20, log_every=10,
                         figures=False, labels=t.labels)
        finals[(t.labels[0][1], t.trial.seed)] = train_trial(t.trial, ctx, LocalSession())
    return uri, plan, opts, finals


def test_claim_verdict_effect_ci_p_and_seeds_against_scipy(micro_runs):
    uri, plan, _, finals = micro_runs
    report = build_report(get_table("4.2"), uri, plan.cells["4.2"])
    assert report.claims_on == "psnr_embedded"  # no HardCases here: the embedded default stands in
    (result,) = [r for r in report.claims if r.claim.row_b == "edsr-t/lambda-5e-3" and r.claim.metric == HC]
    a = [finals[("edsr-t/baseline", s)]["best/psnr_embedded"] for s in (0, 1)]
    b = [finals[("edsr-t/lambda-5e-3", s)]["best/psnr_embedded"] for s in (0, 1)]
    paired = stats.ttest_rel(b, a)  # seeds 0 and 1 in both rows: the seed-matched best metric
    assert result.test == "paired" and result.p == pytest.approx(paired.pvalue, abs=1e-6)
    assert result.effect == pytest.approx(np.mean(b) - np.mean(a), abs=1e-12)
    ci = paired.confidence_interval(0.95)
    assert result.ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    # micro presets, a stand-in metric, 100 steps: a proxy, never "reproduced"; no MDE rule against the thesis
    assert result.proxy == "edsr-t-micro, Embedded PSNR, 100 steps" and result.measured_on == "psnr_embedded"
    assert result.verdict == ("undecided" if paired.pvalue >= 0.05 else
                              "same sign" if np.mean(b) < np.mean(a) else "opposite sign")
    assert result.seeds_needed is None and not result.underpowered
    md = to_markdown(report)
    assert "### Claims of the thesis on Table 4.2" in md and "tested on Embedded PSNR" in md


def stats_paired_seeds(effect: float, std_diff: float) -> int:
    """The smallest n ≥ 2 whose paired t-test (n − 1 df, scipy's noncentral t) has power ≥ 0.8."""
    def power(n: int) -> float:
        crit, nc = stats.t.isf(0.025, n - 1), effect / (std_diff / np.sqrt(n))
        return stats.nct.sf(crit, n - 1, nc) + stats.nct.sf(crit, n - 1, -nc)

    return next(n for n in range(2, 10**6) if power(n) >= 0.8)


def test_seeds_for_power_prints_counts_and_adding_seeds_trains_only_those(micro_runs, tmp_path, capsys,
                                                                          monkeypatch):
    from srprior.commands import sweep as sweep_command

    uri, _, opts, finals = micro_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert sweep_command._run(SweepOptions.of({**opts, "seeds_for_power": 0.5, "output_dir": str(tmp_path), "address": "local"})) == 0
    out = capsys.readouterr().out
    # seeds pair the rows: sized from the spread of the per-seed differences λ_AP = 5e-3 − baseline
    best = {key: m["best/psnr_embedded"] for key, m in finals.items()}
    diff = [best[("edsr-t/lambda-5e-3", s)] - best[("edsr-t/baseline", s)] for s in (0, 1)]
    pooled = np.std(diff, ddof=1)
    assert f"paired test; pooled std {pooled:.4f} from runs (4), paired differences of 1 row(s)" in out
    assert "on psnr_embedded" in out
    assert int(out.split("table 4.2: ")[1].split(" seeds")[0]) == stats_paired_seeds(0.5, pooled)
    seeds = int(out.split("table 4.2: ")[1].split(" seeds per row")[0])
    assert f"--seeds {seeds}" in out and seeds >= 2
    assert sweep_command._run(SweepOptions.of({**opts, "seeds": seeds + 1, "plan": True, "output_dir": str(tmp_path),
                       "address": "local"})) == 0
    plan_out = capsys.readouterr().out
    assert f"to train: {2 * (seeds + 1) - 4} · reused (FINISHED in MLflow): 4" in plan_out


def test_terminal_view_fits_120_columns_with_bicubic_and_says_incomplete(micro_runs):
    """The console view: ≤ 120 columns, the bicubic reference of the same crops (checked against
    srprior.evaluate on the embedded test crop), and INCOMPLETE with the resume command when runs are
    missing (here: the full smoke plan of Table 4.2, of which only two rows ran)."""
    from srprior.data.embedded import test_split
    from srprior.evaluate import bicubic_baseline
    from srprior.plan import make_plan
    from srprior.report.render import to_terminal
    from srprior.trainers.evaluation import _crop

    uri, _, _, _ = micro_runs
    plan = make_plan(SweepOptions.of({"table": "4.2", "budget": "smoke", "set": ["di=false"]}))
    report = build_report(get_table("4.2"), uri, plan.cells["4.2"], budget="smoke")
    from srprior.trainers.budgets import get_budget

    caption = report.caption  # the budget's, with the steps and seeds that ran (2 per row that ran)
    assert caption.startswith("smoke budget: 100 steps, 2 seeds per row, micro models")
    assert caption.endswith("Ran: 100 steps, 2 seed(s) per row, preset(s) edsr-t-micro.")
    text = to_terminal(report, {"html": Path("report.html")}, resume="srprior sweep --resume s")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120 and "INCOMPLETE: 0 failed, 28 missing of 32 planned runs; resume: " \
        "srprior sweep --resume s" in text and lines[-1] == "with the thesis's numbers: report.html"
    assert " ".join(text.split()).count(" ".join(caption.split())) == 1 and "smoke budget: 100 steps" in text

    crop = [_crop(test_split(2)[0], get_budget("smoke").science["eval_crop"])]
    expected = bicubic_baseline(crop, 2)["psnr"]
    bicubic = next(line for line in lines if line.startswith("Bicubic (same crops)"))
    assert f"{expected:.2f}" in bicubic.split()[3]
    assert dict(report.bicubic)["psnr_embedded"] == pytest.approx(expected, abs=1e-9)
    # each row's gain over bicubic: its mean Embedded PSNR minus the bicubic line, in the column after it
    head = next(line for line in lines if "Δ vs bicub" in line)
    assert head.index("Embedded PSNR") < head.index("Δ vs bicub") < head.index("Embedded SSIM")
    for r in report.rows:
        if r.cells["psnr_embedded"].n:
            assert r.group_label == "EDSR-T → edsr-t-micro"  # the preset actually trained
            row_line = next(line for line in lines if line.startswith(f"{r.group_label} {r.row.label}"))
            assert row_line.split()[row_line.split().index(f"{len(r.seeds)}/{r.expected}") + 2] == \
                f"{r.cells['psnr_embedded'].mean - expected:+.2f}"


def test_a_proxy_in_every_view_paired_p_raw_and_adjusted_and_the_setting(micro_runs):
    """One claim of Table 4.2 is tested on these runs (a family of one: Holm leaves p as is), paired; micro
    presets on the embedded crops are a proxy: all four views say "same sign" / "opposite sign" / "undecided",
    never "reproduced" or "contradicted", name the trained preset, the measured metric and the budget's caption
    with the steps and seeds that ran; no UNDERPOWERED against the thesis's effect."""
    from srprior.report.render import to_terminal

    uri, plan, _, finals = micro_runs
    report = build_report(get_table("4.2"), uri, plan.cells["4.2"], correction="bh", budget="smoke")
    (result,) = [r for r in report.claims if r.source == "runs"]
    a, b = ([finals[(row, s)]["best/psnr_embedded"] for s in (0, 1)] for row in ("edsr-t/baseline", result.claim.row_b))
    assert (result.family, result.correction, result.p_adj, result.test) == (1, "bh", result.p, "paired")
    assert result.p == pytest.approx(stats.ttest_rel(b, a).pvalue, abs=1e-6) and not result.underpowered
    md, page, text, table = to_markdown(report), to_html(report), to_terminal(report), to_csv(report)
    assert "Image sets: claims on HardCases PSNR tested on Embedded PSNR (stand-in for HardCases)." in md
    assert "p adjusted for multiplicity by Benjamini–Hochberg over the 1 claim(s)" in md and "| p (BH) |" in md
    line = next(x for x in text.splitlines() if "lambda-5e-3 vs baseline hardcases↓" in x)
    assert f"paired p {result.p:.2g} BH {result.p:.2g} MDE {result.mde:.3g}" in line and "UNDERPOWERED" not in line
    assert line.startswith(f"  {result.verdict} ") and "proxy: edsr-t-micro, Embedded PSNR, 100 steps" in text
    for view in (md, page, text, table):
        flat = " ".join(view.split())
        assert "reproduced" not in flat and "contradicted" not in flat
        assert "edsr-t-micro" in flat and "smoke budget: 100 steps, 2 seeds per row" in flat
    assert "EDSR-T → edsr-t-micro" in md and "EDSR-T → edsr-t-micro" in page and "<th>Measured on</th>" in page
    assert "| psnr_hardcases | psnr_embedded | ↓ | paired |" in md
    rows = list(csv.DictReader(io.StringIO(table)))
    assert rows[0]["kind"] == "setting" and rows[0]["label"] == report.caption
    claims = [r for r in rows if r["kind"] == "claim"]
    assert len(claims) == len(report.claims) == 11
    row = next(r for r in claims if r["row"] == result.claim.row_b and r["metric"] == HC)
    assert (row["verdict"], row["correction"], row["underpowered"], row["test"], row["measured_on"]) == \
        (result.verdict, "bh", "0", "paired", "psnr_embedded") and row["proxy"] == result.proxy
    assert float(row["p_adjusted"]) == float(row["p_value"]) == pytest.approx(result.p)
    assert next(r for r in rows if r["kind"] == "row" and r["row"] == "edsr-t/baseline")["trained"] == "edsr-t-micro"


def test_the_thesis_setting_keeps_the_thesis_words(tmp_path):
    """Thesis presets, the thesis budget's schedule, the claim's own benchmark (HardCases): "reproduced", the
    thesis's effect sizes the MDE rule, and the caption says what ran."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(get_table("4.2").experiment, artifact_location=(tmp_path / "a").as_uri())
    values = {("edsr-t/baseline", s): {HC: 28.20 + s / 50} for s in range(4)}
    values |= {("edsr-t/lambda-1e-4", s): {HC: 28.30 + s / 50 + (s % 2) / 100} for s in range(4)}
    log_sweep(client, exp, "t1", {"table": "4.2", "budget": "thesis", "seeds": 4,
                                  "rows": "edsr-t/baseline,edsr-t/lambda-1e-4"}, values)
    report = report_of("4.2", uri, "t1")
    (result,) = [r for r in report.claims if r.source == "runs"]
    assert (result.verdict, result.proxy, result.test, result.measured_on) == ("reproduced", None, "paired", HC)
    assert report.caption == "thesis budget: 50000 steps, 4 seed(s) per row. Ran: 50000 steps, 4 seed(s) per " \
                             "row, preset(s) edsr-t."
    assert "**reproduced**" in to_markdown(report) and "EDSR-T →" not in to_markdown(report)


def test_a_search_ranks_configurations_by_the_selected_objective(tmp_path):
    """The search table reads the value the search optimised (best/val/psnr, the best-validation PSNR), not the
    last point of the val/psnr curve: a configuration whose last validation dipped still ranks first."""
    from srprior.report.search import search_report
    from srprior.search_spaces.search import get_search

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(get_search("smoke").experiment)
    curves = {"a": {"last": 30.0, "best": 31.0}, "b": {"last": 30.5, "best": 30.6}}
    for config, m in curves.items():
        for seed in (0, 1):
            run = client.create_run(exp, tags={contracts.ROLE: "trial", contracts.CONFIG_HASH: config * 16,
                                               contracts.SEED: str(seed)}).info.run_id
            client.log_batch(run, metrics=[Metric("val/psnr", m["last"] + seed / 100, 0, 6),
                                           Metric("best/val/psnr", m["best"] + seed / 100, 0, 6)],
                             params=[Param("lambda_ap", "0.0001"), Param("w", "sim"), Param("n_ssr", "1"),
                                     Param("scenario", "local")])
            client.set_terminated(run)
    report = search_report("smoke", uri)
    first = report.rows[0]
    assert first.row.id == "cfg-aaaaaaaa" and first.cells["val/psnr"].mean == pytest.approx(31.005)
    assert report.rows[1].cells["val/psnr"].test == "paired"  # seeds 0 and 1 in both configurations


def test_a_report_on_hardcases_r_shows_the_control_effect_and_the_difference(tmp_path):
    """Runs that evaluated HardCases-R and its control tiles: each claim on HardCases shows its effect on both
    (paired: ttest_rel on the seed-matched values) and their difference, in every view."""
    from srprior.report.render import to_terminal

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment(get_table("4.2").experiment, artifact_location=(tmp_path / "a").as_uri())
    rc = contracts.CONTROL_METRIC
    values = {("edsr-t/baseline", s): {"psnr_hardcases_r": 25.0 + s / 10, rc: 30.0 + s / 20} for s in range(3)}
    values |= {("edsr-t/lambda-1e-4", s): {"psnr_hardcases_r": 25.06 + s / 10 + (s == 1) / 100,
                                           rc: 30.01 + s / 20 - (s == 2) / 100} for s in range(3)}
    log_sweep(client, exp, "c1", {"table": "4.2", "budget": "short", "seeds": 3,
                                  "rows": "edsr-t/baseline,edsr-t/lambda-1e-4"}, values)
    report = report_of("4.2", uri, "c1")
    assert report.control == rc and report.claims_on == "psnr_hardcases_r"
    (r,) = [c for c in report.claims if c.source == "runs"]
    a, b = ([values[(row, s)][rc] for s in range(3)] for row in ("edsr-t/baseline", "edsr-t/lambda-1e-4"))
    assert r.control_effect == pytest.approx(np.mean(b) - np.mean(a))
    assert r.control_p == pytest.approx(stats.ttest_rel(b, a).pvalue, abs=1e-6)
    assert r.control_difference == pytest.approx(r.effect - r.control_effect)
    assert r.proxy == "HardCases-R (rebuilt) PSNR, 5000 steps"  # thesis preset, stand-in set, short schedule
    md = to_markdown(report)
    assert "| Effect on control | HardCases-R − control |" in md and f"| {r.control_difference:+.3f} |" in md
    assert "HardCases-R control (random tiles) PSNR" in md  # its own column in the table
    assert f"control {r.control_effect:+.3f}" in to_terminal(report)
    assert "<th>HardCases-R − control</th>" in to_html(report)
    row = next(x for x in csv.DictReader(io.StringIO(to_csv(report))) if x["kind"] == "claim" and x["proxy"])
    assert float(row["control_difference"]) == pytest.approx(r.control_difference)
