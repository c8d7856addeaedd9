"""What a report's runs actually were, read from the runs themselves (every schema leaf is an MLflow param):
the preset each row trained, the schedule against the thesis's, the steps and seeds that ran. Claims use it for
their verdict words (srprior.search_spaces.claims.Setting: "reproduced" only in the thesis's setting), rows for
their labels ("EDSR-T → edsr-t-micro") and every view for its caption."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from srprior.search_spaces.claims import Setting

# The schedule fields that make a budget the thesis's (§4.1); bf16 and logging are the platform's, not science
# the thesis fixes.
SCHEDULE_KEYS = ("steps", "batch", "lr_patch", "learning_rate", "eval_crop", "max_eval_images")
UNRECORDED = "?"


def run_params(params: Mapping[str, str]) -> dict[str, str]:
    """The preset and schedule fields one run logged ("?" where an old run did not log them)."""
    return {k: params.get(k, UNRECORDED) for k in ("preset", *SCHEDULE_KEYS)}


def thesis_schedule() -> dict[str, str]:
    from srprior.schema import trial_config
    from srprior.trainers.budgets import get_budget

    params = trial_config("budget thesis", **get_budget("thesis").science).params()
    return {k: params[k] for k in SCHEDULE_KEYS}


def schedule_text(ran: list[dict[str, str]]) -> str | None:
    """None when every run followed the thesis's schedule; else what differs ("2000 steps", or the fields)."""
    if not ran:
        return None
    if any(UNRECORDED in (r[k] for k in SCHEDULE_KEYS) for r in ran):
        return "schedule not recorded"
    thesis = thesis_schedule()
    steps = sorted({r["steps"] for r in ran}, key=_num)
    if steps != [thesis["steps"]]:
        return f"{'–'.join(steps)} steps"  # the caption says the rest
    differ = [k for k in SCHEDULE_KEYS if {r[k] for r in ran} != {thesis[k]}]
    return f"schedule ≠ §4.1 ({', '.join(differ)})" if differ else None


def _num(text: str) -> Any:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def setting(ran: Mapping[str, list[dict[str, str]]], measured: Mapping[str, str],
            names: Mapping[str, str]) -> Setting:
    """The claims' Setting from the runs' params per row (`ran`: row id -> one run_params per run)."""
    trained = {row: " / ".join(sorted({r["preset"] if r["preset"] != UNRECORDED else "preset not recorded"
                                       for r in runs})) for row, runs in ran.items() if runs}
    return Setting(trained, schedule_text([r for runs in ran.values() for r in runs]), dict(measured), dict(names))


def caption(budget: str | None, ran: Mapping[str, list[dict[str, str]]]) -> str:
    """The budget's caption (what its numbers can and cannot show) with the steps and seeds that actually ran."""
    runs = [r for rs in ran.values() for r in rs]
    steps = "–".join(sorted({r["steps"] for r in runs}, key=_num)) or "?"
    counts = sorted({len(rs) for rs in ran.values() if rs})
    seeds = "–".join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts)) or "0"
    text = ""
    if budget:
        from srprior.trainers.budgets import BUDGETS

        if budget in BUDGETS and BUDGETS[budget].caption:
            text = BUDGETS[budget].caption.format(steps=steps, seeds=seeds)
        else:
            text = f"{budget} budget: {steps} steps, {seeds} seed(s) per row."
    presets = sorted({r["preset"] for r in runs})
    return (text + f" Ran: {steps} steps, {seeds} seed(s) per row, preset(s) {', '.join(presets) or '—'}.").strip()
