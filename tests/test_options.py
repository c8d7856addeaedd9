"""SweepOptions: the one typed value a sweep's options travel as (command line → plan, launcher, parent run, state
file → --resume)."""

from __future__ import annotations

import json

import pytest

from srprior.commands.sweep import add_arguments
from srprior.errors import Parser, user_message
from srprior.options import RUNTIME, OptionsError, SweepOptions
from srprior.plan import make_plan


def _parse(*argv: str) -> SweepOptions:
    parser = Parser(prog="sweep")
    add_arguments(parser)
    return SweepOptions.of(vars(parser.parse_args(list(argv))))


def test_the_command_line_becomes_one_frozen_value():
    opts = _parse("--table", "4.2", "--budget", "short", "--set", "n_ssr=3", "--set", "lambda_ap=1e-4",
                  "--seeds", "3", "--no-figures", "--max-concurrent", "2")
    assert (opts.table, opts.budget, opts.set, opts.seeds, opts.figures, opts.max_concurrent) == \
        ("4.2", "short", ("n_ssr=3", "lambda_ap=1e-4"), 3, False, 2)
    with pytest.raises(AttributeError):
        opts.table = "4.3"  # frozen
    assert _parse().budget == "smoke" and _parse().set == ()


def test_the_stored_json_rebuilds_the_same_options_without_the_runtime_ones():
    opts = _parse("--table", "smoke", "--set", "steps=7", "--name", "s1", "--output-dir", "/x", "--plan",
                  "--max-failures", "0")
    stored = json.loads(opts.to_json())
    assert stored["set"] == ["steps=7"] and stored["name"] == "s1" and stored["table"] == "smoke"
    assert not set(stored) & set(RUNTIME)  # --output-dir, --plan, --max-failures belong to one command line
    again = SweepOptions.from_json(opts.to_json())
    assert again == opts.replace(output_dir=None, plan=False, max_failures=3)  # 3: the default
    assert make_plan(again).cells == make_plan(opts).cells


def test_resume_keeps_the_stored_sweep_and_takes_this_command_lines_runtime_options():
    stored = SweepOptions.from_json(_parse("--table", "smoke", "--seeds", "2", "--name", "s1").to_json())
    command = _parse("--resume", "s1", "--output-dir", "/o", "--max-concurrent", "3", "--seeds", "9")
    resumed = stored.resumed_by(command)
    assert (resumed.table, resumed.seeds, resumed.name) == ("smoke", 2, "s1")  # the sweep, as stored
    assert (resumed.resume, resumed.output_dir, resumed.max_concurrent) == ("s1", "/o", 3)


def test_an_unknown_option_is_one_clear_line():
    with pytest.raises(OptionsError) as info:
        SweepOptions.of({"table": "smoke", "learning_rate_gamma": 0.5})
    assert user_message(info.value) == \
        "sweep options learning_rate_gamma: no such option of `srprior sweep` (see its --help)"
    assert make_plan(SweepOptions.of({"table": "smoke", "budget": None})).budget == "smoke"  # None: the default


def test_the_planner_and_the_sweep_take_only_options():
    """No dict entry points: a mapping becomes options once, at the command line (SweepOptions.of)."""
    from srprior.sweep.run import run_sweep

    with pytest.raises(TypeError, match="make_plan takes SweepOptions, not dict"):
        make_plan({"table": "smoke"})
    with pytest.raises(TypeError, match="run_sweep takes SweepOptions, not dict"):
        run_sweep({"table": "smoke", "plan": True})
    defaults = SweepOptions()
    assert (defaults.workers, defaults.max_failures, defaults.budget) == (1, 3, "smoke")  # the platform's, once
