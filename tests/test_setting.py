"""srprior.report.setting: the caption states the steps and seeds that ran (not the budget's plan), and the
schedule counts as the thesis's only when every run followed §4.1."""

from __future__ import annotations

from srprior.report.setting import caption, run_params, schedule_text, setting, thesis_schedule
from srprior.schema import trial_config
from srprior.trainers.budgets import get_budget


def _ran(budget: str, preset: str, seeds: int, **extra) -> list[dict[str, str]]:
    params = trial_config(**{**get_budget(budget).science, "preset": preset, **extra}).params()
    return [run_params(params) for _ in range(seeds)]


def test_the_cpu_hour_caption_says_the_seeds_that_ran():
    """`--seeds 8` under cpu-hour (whose plan is 10 seeds): the caption says 8."""
    ran = {row: _ran("cpu-hour", "edsr-t-micro", 8) for row in ("edsr-t/baseline", "edsr-t/lambda-5e-3")}
    text = caption("cpu-hour", ran)
    assert text.startswith("cpu-hour budget: 2000 steps of micro models (a residual over bicubic), 8 seeds per row")
    assert text.endswith("Ran: 2000 steps, 8 seed(s) per row, preset(s) edsr-t-micro.") and "10 seeds" not in text
    uneven = {"a": _ran("cpu-hour", "edsr-t-micro", 8), "b": _ran("cpu-hour", "edsr-t-micro", 10, steps=1500)}
    assert "Ran: 1500–2000 steps, 8–10 seed(s) per row" in caption(None, uneven)


def test_only_the_thesis_schedule_is_the_thesis_setting():
    assert thesis_schedule()["steps"] == "50000" and schedule_text(_ran("thesis", "edsr-t", 2)) is None
    assert schedule_text(_ran("cpu-hour", "edsr-t-micro", 2)) == "2000 steps"
    assert schedule_text(_ran("thesis", "edsr-t", 2, learning_rate=1e-3)) == "schedule ≠ §4.1 (learning_rate)"
    assert schedule_text([{**r, "steps": "?"} for r in _ran("thesis", "edsr-t", 1)]) == "schedule not recorded"
    s = setting({"edsr-t/baseline": _ran("short", "edsr-t", 2)}, {}, {})
    assert dict(s.trained) == {"edsr-t/baseline": "edsr-t"} and s.schedule == "5000 steps"


def test_runs_without_params_are_never_the_thesis_setting():
    """An old run that logged no params: its preset and schedule are unknown, so a claim on it is a proxy."""
    from srprior.search_spaces.claims import CLAIMS

    old = [run_params({}) for _ in range(2)]
    s = setting({"edsr-t/baseline": old, "edsr-t/lambda-1e-4": old}, {}, {})
    claim = next(c for c in CLAIMS if c.key == "4.2:edsr-t/lambda-1e-4-vs-edsr-t/baseline:psnr_hardcases")
    assert s.proxy(claim) == "preset not recorded, schedule not recorded"
