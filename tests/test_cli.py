"""The console script speaks to users: what srprior is, one line per command, every smoke option with its
default, the main job announced before it starts, and smoke's numbers explained."""

from __future__ import annotations

import re

import pytest

from srprior import cli
from srprior.commands.smoke import verdict


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_says_what_srprior_is_and_lists_the_commands(capsys):
    text = _help(capsys)
    assert "register" not in text and "super-resolution" in text and "about 4 minutes on" in text
    listed = re.findall(r"^    (\w+) +\S", text, flags=re.M)
    assert listed == ["smoke", "data", "eval", "evaluate", "sweep", "report", "ui"]


def test_smoke_help_gives_every_option_a_help_and_its_default(capsys):
    text = _help(capsys, "smoke")
    options = re.findall(r"^  (--[\w-]+)", text, flags=re.M)
    assert options == ["--preset", "--scale", "--steps", "--batch", "--patch", "--lambda-ap", "--seed"]
    assert text.count("(default:") == len(options)


def test_bare_srprior_announces_the_main_job_first(monkeypatch, capsys):
    monkeypatch.setattr(cli, "MAIN_JOB", ["smoke", "--steps", "1", "--batch", "2", "--patch", "16"])
    assert cli.main([]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines()[0] == cli.MAIN_JOB_NOTE and "Table 4.2" in cli.MAIN_JOB_NOTE
    # a micro preset starts as the bicubic reference (a residual over its skip): one step leaves it there
    assert "edsr-t-micro is 0.00 dB above bicubic after 1 steps." in out.out


def test_smoke_verdict_names_the_gap_and_what_closes_it():
    below = verdict(26.72, 31.74, "edsr-t-micro", 200)
    assert "5.02 dB below bicubic" in below and "--budget short" in below.replace("\n", " ")
    assert all(len(line) <= 100 for line in below.splitlines())
    assert verdict(32.0, 31.5, "edsr-t", 5000) == "edsr-t is 0.50 dB above bicubic after 5000 steps."


def test_sweep_help_lists_every_science_field_from_the_schemas_metadata(capsys):
    from srprior.schema import SCIENCE_KEYS

    with pytest.raises(SystemExit):
        cli.main(["sweep", "--help"])
    out = capsys.readouterr().out
    epilog = out[out.index("science fields for --set KEY=VALUE"):]
    assert [line.split("=")[0].strip() for line in epilog.splitlines()[1:] if line.strip()] == list(SCIENCE_KEYS)
    assert "  n_ssr=1: SSRs per PoI used in L_AP (Table 4.4) [thesis: N_SSR]" in epilog
