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
A full disk (`disk_full`: ENOSPC, or SQLite's "database or disk is full", wherever it is raised) is not the
trial's fault and not worth a retry either: the worker reports `contracts.STOP_SWEEP`, and the sweep's Tune stopper
ends the whole sweep with one line and the resume command (srprior.watchdog); the runs stay unfinished.
Neither is retried by `--resume` when the reason is non-finite numbers (the same science diverges again); a data
error is (the file may have been fixed).

Divergence without NaN (`Behaviour`): `--set learning_rate=1` trains to 8 dB against bicubic's 33 with every number
finite. A run whose training loss rises above `diverge_loss_ratio` × its step-1 value (the untrained model's), or
whose validation PSNR is more than `diverge_psnr_margin` dB below bicubic's on the same images after the warm-up,
ends FAILED `diverged: …` (RunContext fields the budget sets, srprior.trainers.budgets), never retried either.
"""

from __future__ import annotations

import errno
import math
from typing import Any

import torch

from srprior import contracts

DIVERGED = "non-finite"  # every divergence reason by numbers starts with it (FusedTrainStep's too)
DIVERGED_BY = "diverged"  # every divergence reason by behaviour starts with it


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

    def check(self, session: Any, step: int, model: torch.nn.Module | None = None,
              found: tuple[int, str] | None = None) -> tuple[int, str] | None:
        """(step, reason) when any rank saw a non-finite loss (or holds non-finite parameters of `model`, or
        brings a `found` failure of its own, e.g. by Behaviour), the same answer on every rank; None when all is
        well. Syncs the host (and the ranks)."""
        first = int(self.first_bad)
        if first:
            found = (first, f"{DIVERGED} loss")
        elif found is None and model is not None and \
                not bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all()):
            found = (step, f"{DIVERGED} parameters")
        return agree(session, found)


def agree(session: Any, found: tuple[int, str] | None) -> tuple[int, str] | None:
    """The earliest failure any rank found, on every rank (Train pairs the ranks' reports: all stop together)."""
    seen = [f for f in session.gather(found) if f]
    return min(seen) if seen else None


class Behaviour:
    """Divergence without NaN (module docstring): the loss against its step-1 value, validation PSNR against
    bicubic's after `diverge_warmup` of the steps. `start` is kept in checkpoints (a resume keeps the rule)."""

    def __init__(self, ctx: Any, cfg: Any, val: list | None, start: float | None = None,
                 bicubic: float | None = None):
        """`val`: the validation images (None on ranks that do not validate), or their `bicubic` PSNR."""
        self.ratio, self.margin, self.start = ctx.diverge_loss_ratio, ctx.diverge_psnr_margin, start
        self.log_every = ctx.log_every
        self.after = math.ceil(ctx.diverge_warmup * cfg.schedule.steps)
        self.bicubic = bicubic
        if self.margin is not None and val and bicubic is None:
            from srprior.evaluate import bicubic_baseline
            from srprior.trainers.evaluation import shave

            self.bicubic = bicubic_baseline(val, cfg.model.scale, shave=shave(cfg))["psnr"]

    def loss(self, step: int, total: Any) -> tuple[int, str] | None:
        """Read at step 1 (the start) and at log steps, when the loop syncs anyway; `total` a scalar tensor or
        float."""
        if step != 1 and step % self.log_every:
            return None
        value = float(total)
        if self.start is None:
            self.start = value
        if self.ratio and 0 < self.start and value > self.ratio * self.start:  # False for NaN: Divergence's
            return step, (f"{DIVERGED_BY}: training loss {value:.3g} at step {step} is over {self.ratio:g}× its "
                          f"step-1 value {self.start:.3g}")
        return None

    def psnr(self, step: int, value: float) -> tuple[int, str] | None:
        if self.margin is None or self.bicubic is None or step < self.after or not value < self.bicubic - self.margin:
            return None
        return step, (f"{DIVERGED_BY}: validation PSNR {value:.2f} dB at step {step} is more than {self.margin:g} dB "
                      f"below bicubic's {self.bicubic:.2f} dB on the same images (checked from step {self.after})")


def final_failure(step: int, metrics: dict[str, float]) -> tuple[int, str] | None:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    return (step, f"{DIVERGED} final metric(s) {', '.join(bad)}") if bad else None


def is_diverged(failure_tag: str | None) -> bool:
    """Whether a run's srprior.failure tag ("step N: reason") says it diverged (deterministic: not retried)."""
    return bool(failure_tag) and failure_tag.partition(": ")[2].startswith((DIVERGED, DIVERGED_BY))


DISK_FULL = ("No space left on device", "database or disk is full")


def disk_full(exc: BaseException | None) -> str | None:
    """What says the disk is full in `exc` or in what it was raised from (MLflow and Ray wrap it), or None."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return str(exc)
        if any(m in str(exc) for m in DISK_FULL):
            return next(line for line in str(exc).splitlines() if any(m in line for m in DISK_FULL))[:300]
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def end_without_retry(trials: list, ctxs: list, session: Any, exc: BaseException) -> None:
    """An error Train would retry in vain: a full disk stops the sweep (STOP_SWEEP), bad data or config ends the
    runs FAILED (end_failed); anything else is raised to Train (a dead node, a flaky call: worth a retry)."""
    if (full := disk_full(exc)) is not None:
        where = ctxs[0].storage_dir if ctxs and ctxs[0].storage_dir else None  # the upload's error names no path
        full += f" (checkpoints under {where})" if where and where not in full else ""
        session.report({contracts.STEP: 0, contracts.OBJECTIVE: math.nan, contracts.STOP_SWEEP: f"disk full: {full}"}, None)
    elif isinstance(exc, non_retryable()):
        end_failed(trials, ctxs, session, exc)
    else:
        raise exc


def report_failed(session: Any, step: int, members: int) -> None:
    """The report that ends a failed Train run normally (Tune requires its objective: NaN)."""
    session.report({contracts.STEP: step, contracts.OBJECTIVE: math.nan, contracts.MEMBERS_FAILED: members}, None)


def end_failed(trials: list, ctxs: list, session: Any, exc: BaseException) -> None:
    """End the runs of `trials` FAILED with `exc` as the reason and report once (every rank), so that Train and
    Tune see a finished run instead of an error to retry."""
    from srprior.trainers.runlog import RunLogger

    if session.rank == 0:
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        for trial, ctx in zip(trials, ctxs):
            if ctx.tracking_uri:
                RunLogger(trial, ctx, ctx.resume_run_id, 0).fail(0, reason)
    report_failed(session, 0, len(trials))
