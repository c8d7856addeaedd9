"""Test-only shorthands over the library (issue 25: they do not belong in production modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srprior.schema import RunContext, Trial


def train_trial(trial: Trial, ctx: RunContext, session: Any) -> dict[str, float]:
    """One trial, a group of one: rank 0's final metrics ({} when it failed, and on other ranks)."""
    from srprior.trainers.loop import train

    return train([trial], [ctx], session)[0]


def load_checkpoint_model(path: str | Path, weights: str = "best"):
    """(model in eval mode, Trial) from a checkpoint's state.pt (a fused group's: its first member)."""
    from srprior.hardcases import load_checkpoint_models

    return load_checkpoint_models(path, weights)[0]
