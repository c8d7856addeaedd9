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
    # the smoke budget's trial, one step at its learning rate (1e-3): the printed gap is the metrics' own
    bicubic, ours = (float(x) for x in re.findall(r"PSNR (\d+\.\d\d) dB", out.out))
    gap = f"{abs(ours - bicubic):.2f} dB {'above' if ours >= bicubic else 'below'} bicubic"
    assert f"edsr-t-micro is {gap}" in out.out and "after 1 steps" in out.out


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


def test_smoke_trains_the_same_first_batch_as_the_smoke_budgets_trial(monkeypatch, capsys):
    """`srprior smoke` is the sweep's loop: its first batch (and initial weights) are the smoke budget's trial's of
    the same seed, recorded from the one stepper both go through."""
    import torch

    from srprior.options import SweepOptions
    from srprior.plan import make_plan
    from srprior.trainers import steppers
    from srprior.trainers.loop import train
    from srprior.trainers.worker import LocalSession

    seen: list[tuple] = []
    batch = steppers.Single.batch

    def first_batch(self):
        out = batch(self)
        weights = {k: v.clone() for k, v in self.net.state_dict().items()}
        seen.append((out, weights, self.optimizer.param_groups[0]["lr"]))
        return out

    monkeypatch.setattr(steppers.Single, "batch", first_batch)
    assert cli.main(["smoke", "--preset", "edsr-t-micro", "--steps", "1", "--seed", "1"]) == 0
    assert "edsr-t-micro" in capsys.readouterr().out
    plan = make_plan(SweepOptions(table="smoke", budget="smoke", rows="edsr-t-micro/lambda-1e-4", seeds=2, steps=1))
    (planned,) = [t for t in plan.trials if t.trial.seed == 1]
    train([planned.trial], [plan.context], LocalSession())
    (smoke_batch, smoke_weights, smoke_lr), (sweep_batch, sweep_weights, sweep_lr) = seen
    assert all(torch.equal(a, b) for a, b in zip(smoke_batch, sweep_batch))
    assert all(torch.equal(smoke_weights[k], sweep_weights[k]) for k in sweep_weights)
    assert smoke_lr == sweep_lr == 1e-3
