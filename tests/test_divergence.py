"""Divergence by behaviour, not only NaN (srprior.trainers.health.Behaviour): real training without Ray (the
worker's own function, micro models, the smoke table), real MLflow stores; and a report that never calls a failed
or worse-than-bicubic row the best, and says when every trial diverged."""

from __future__ import annotations

import re

import pytest

from srprior import contracts, tracking
from srprior.plan import make_plan
from srprior.report.model import ReportError, build_report, summarize
from srprior.schema import RunContext, Trial, trial_config
from srprior.search_spaces import get_table
from srprior.trainers import loop
from srprior.trainers.health import is_diverged
from helpers import train_trial
from srprior.trainers.worker import LocalSession
from srprior.options import SweepOptions

SMOKE = make_plan(SweepOptions.of({"table": "smoke", "seeds": 1, "steps": 20, "set": ["di=false"]}))  # 20 smoke steps, val at 10


def _trial(planned, **flat) -> Trial:
    return Trial(trial_config(**{**planned.trial.config.flat(), **flat}), planned.trial.seed)


def _ctx(uri: str, planned, **extra) -> RunContext:
    return SMOKE.context.replace(tracking_uri=uri, experiment="srprior/table-smoke", labels=planned.labels,
                                 figures=False, sweep_id="local", **extra)


def test_learning_rate_1_on_the_smoke_table_ends_failed_diverged_and_is_never_bolded(tmp_path):
    """`--set learning_rate=1`: every number stays finite (8-9 dB against bicubic's 33.4), but the loss leaves
    its step-1 value by orders of magnitude: the run ends FAILED `diverged: …` at the first log step, is not
    retried, and the report shows the row as failed, not as the best."""
    uri = tracking.default_tracking_uri(tmp_path)
    good, bad = SMOKE.trials
    assert train_trial(_trial(bad, learning_rate=1.0), _ctx(uri, bad), LocalSession()) == {}
    healthy = train_trial(_trial(good), _ctx(uri, good), LocalSession())
    assert healthy[f"{contracts.SELECTED}psnr_embedded"] > 10
    run = tracking.runs_by_key(uri)[_trial(bad, learning_rate=1.0).key]
    reason = run.data.tags[contracts.FAILURE]
    assert run.info.status == "FAILED" and is_diverged(reason), reason
    match = re.fullmatch(r"step 5: diverged: training loss (\S+) at step 5 is over 100× its step-1 value (\S+)",
                         reason)
    assert match and float(match[1]) > 100 * float(match[2]) > 0, reason
    cells = [(good.labels[0][1], 0, _trial(good).key), (bad.labels[0][1], 0, _trial(bad, learning_rate=1.0).key)]
    report = build_report(get_table("smoke"), uri, cells)
    assert report.failed == 1
    assert not any(c.best for r in report.rows for c in r.cells.values() if r.row.id == bad.labels[0][1])


def test_validation_psnr_far_below_bicubic_after_the_warm_up_ends_failed(tmp_path):
    """With the PSNR rule on (margin 3 dB after half the steps), a smoke trial of a thesis preset (edsr-t: no
    bicubic skip, so far below bicubic's 33.4 on the same validation crop after 10 steps; the micro presets
    start at bicubic) ends FAILED at the first validation after the warm-up; off (smoke's budget), the same
    trial finishes."""
    uri = tracking.default_tracking_uri(tmp_path)
    planned = SMOKE.trials[0]
    ctx = _ctx(uri, planned, diverge_psnr_margin=3.0, diverge_warmup=0.5)
    assert train_trial(_trial(planned, preset="edsr-t"), ctx, LocalSession()) == {}
    reason = tracking.runs_by_key(uri)[_trial(planned, preset="edsr-t").key].data.tags[contracts.FAILURE]
    match = re.fullmatch(r"step 10: diverged: validation PSNR (\S+) dB at step 10 is more than 3 dB below "
                         r"bicubic's (\S+) dB on the same images \(checked from step 10\)", reason)
    assert match and float(match[1]) < float(match[2]) - 3 and float(match[2]) == pytest.approx(33.40, abs=0.01)
    assert SMOKE.context.diverge_psnr_margin is None
    with pytest.raises(ValueError, match="diverge_psnr_margin=-1"):
        RunContext(diverge_psnr_margin=-1)


def test_a_fused_group_fails_its_diverging_members(tmp_path):
    """The smoke table's rows fused into one worker with learning_rate=1: each member ends FAILED diverged."""
    uri = tracking.default_tracking_uri(tmp_path)
    trials = [_trial(p, learning_rate=1.0) for p in SMOKE.trials]
    assert loop.train(trials, [_ctx(uri, p) for p in SMOKE.trials], LocalSession()) == [{}, {}]
    runs = tracking.runs_by_key(uri)
    assert [runs[t.key].info.status for t in trials] == ["FAILED", "FAILED"]
    assert all(runs[t.key].data.tags[contracts.FAILURE].startswith("step 5: diverged: training loss")
               for t in trials)


def test_a_sweep_whose_trials_all_diverged_says_so(tmp_path):
    """λ_AP = 1e39 overflows at step 1 in every trial: the report says all trials diverged, naming a reason,
    instead of blaming a schema or budget change."""
    uri = tracking.default_tracking_uri(tmp_path)
    trials = [_trial(p, lambda_ap=1e39) for p in SMOKE.trials]
    for trial, planned in zip(trials, SMOKE.trials):
        train_trial(trial, _ctx(uri, planned), LocalSession())
    cells = [(p.labels[0][1], 0, t.key) for t, p in zip(trials, SMOKE.trials)]
    with pytest.raises(ReportError, match=r"^all 2 trial run\(s\) of table smoke diverged, e\.g\. 'step 1: "
                                          r"non-finite loss': no value to report"):
        build_report(get_table("smoke"), uri, cells, sweep_id="local")


def test_no_row_below_bicubic_or_with_a_failed_run_is_bold():
    spec = get_table("smoke")
    base, ours = (r.id for r in spec.rows)
    values = {base: {0: {"psnr_set5": 30.0}, 1: {"psnr_set5": 30.2}},
              ours: {0: {"psnr_set5": 31.0}, 1: {"psnr_set5": 31.2}}}

    def bold(**kw) -> dict[str, bool]:
        return {r.row.id: r.cells["psnr_set5"].best for r in summarize(spec, values, **kw)}

    assert bold() == {base: False, ours: True}
    assert bold(bicubic={"psnr_set5": 33.4}) == {base: False, ours: False}  # both worse than bicubic
    assert bold(bicubic={"psnr_set5": 30.5}) == {base: False, ours: True}
    assert bold(failed_rows=frozenset({ours})) == {base: True, ours: False}  # ours lost a seed: not comparable
