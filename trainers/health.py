"""A trial that cannot succeed ends FAILED, once, with the reason: non-finite numbers, and errors that repeat.

Divergence (`Divergence`): a run whose loss, parameters or final metrics are non-finite must end FAILED with the
step and reason (tag srprior.failure), never as a value, and never log a non-finite point. The loop must not sync
the host every step, so `track` folds `isfinite(loss)` into a device tensor (the first bad step) and `check` reads
it at the steps that sync anyway (logging, validation, checkpoints), then agrees across ranks (every rank stops at
the same step: Train pairs the ranks' reports). Validation and checkpoint steps check the parameters too, so a
non-finite model is never validated, checkpointed (a resume would load it) or evaluated.

Errors that repeat (`non_retryable()`: bad data, bad config): Train would retry them from the last checkpoint
until max_failures, Tune once more, each time the same. The worker ends the runs FAILED and returns normally
(Train and Tune retry only errors); the sweep reads the FAILED runs from MLflow and reports them.
Neither is retried by `--resume` when the reason is non-finite numbers (the same science diverges again); a data
error is (the file may have been fixed).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from srprior import contracts

DIVERGED = "non-finite"  # every divergence reason starts with it (srprior.trainers.group's too)


def non_retryable() -> tuple[type[BaseException], ...]:
    from srprior.data.datasets import DatasetError
    from srprior.data.io import ImageError
    from srprior.schema_fields import ConfigError

    return DatasetError, ImageError, ConfigError, FileNotFoundError


class Divergence:
    """The first step whose loss was non-finite, kept on the device (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)

    def track(self, step: int, loss: torch.Tensor) -> None:
        self.first_bad.masked_fill_((self.first_bad == 0) & ~torch.isfinite(loss.detach()), step)

    def check(self, session: Any, step: int, model: torch.nn.Module | None = None) -> tuple[int, str] | None:
        """(step, reason) when any rank saw a non-finite loss (or holds non-finite parameters of `model`), the
        same answer on every rank; None when all is finite. Syncs the host (and the ranks)."""
        first = int(self.first_bad)
        found = (first, f"{DIVERGED} loss") if first else None
        if found is None and model is not None and \
                not bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()):
            found = (step, f"{DIVERGED} parameters")
        seen = [f for f in session.gather(found) if f]
        return min(seen) if seen else None


def final_failure(step: int, metrics: dict[str, float]) -> tuple[int, str] | None:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    return (step, f"{DIVERGED} final metric(s) {', '.join(bad)}") if bad else None


def is_diverged(failure_tag: str | None) -> bool:
    """Whether a run's srprior.failure tag ("step N: reason") says it diverged (deterministic: not retried)."""
    return bool(failure_tag) and failure_tag.partition(": ")[2].startswith(DIVERGED)


def report_failed(session: Any, step: int, members: int) -> None:
    """The report that ends a failed Train run normally (Tune requires its objective: NaN)."""
    session.report({"step": step, contracts.OBJECTIVE: math.nan, "members_failed": members}, None)


def end_failed(trials: list, ctxs: list, session: Any, exc: BaseException) -> None:
    """End the runs of `trials` FAILED with `exc` as the reason and report once (every rank), so that Train and
    Tune see a finished run instead of an error to retry."""
    from srprior.trainers.worker import RunLogger

    if session.rank == 0:
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        for trial, ctx in zip(trials, ctxs):
            if ctx.tracking_uri:
                RunLogger(trial, ctx, ctx.resume_run_id, 0).fail(0, reason)
    report_failed(session, 0, len(trials))
