"""The one training loop: a typed Trial list and RunContexts in, metrics and checkpoints out (a trial is a group
of one); knows nothing of the sweep.

`train(trials, ctxs, session)` is the whole training run, for one trial (srprior.trainers.steppers.Single: every
rank of a DDP trial runs it) or a fused group (steppers.Fused). `session` is the only thing that differs between
Ray Train (srprior.trainers.worker.RaySession: ranks, DDP, checkpoints registered with Train) and a plain process
(LocalSession: one rank, checkpoints kept in memory — tests and the two-step smoke test of every table row run
this way). The loop owns what both share: resuming from a checkpoint, timing, validation and model selection
(`Best`), the MLflow runs (srprior.trainers.runlog.RunLogger, rank 0), divergence checks (srprior.trainers.health:
non-finite numbers and `Behaviour`) at the steps that sync anyway, checkpoints, the held-out roles and the final
evaluation. Every rank reports at the same steps (Train's barrier).

A member whose loss, parameters or final metrics turn non-finite, or that diverges by behaviour, ends its run
FAILED with the step and the reason; the other members of a group go on untouched (the fused step froze it), and
the run stops when no member is left.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from srprior import contracts
from srprior.schema import RunContext, Trial
from srprior.trainers import checkpoints
from srprior.trainers.evaluation import selected_metrics
from srprior.trainers.health import Behaviour, final_failure, report_failed
from srprior.trainers.runlog import RunLogger
from srprior.trainers.steppers import Found, Fused, Single


class Best:
    """Model selection, thesis §4.2: "the validation split has been used for model selection during training".
    The weights of the best validation PSNR so far, kept in every checkpoint so a resumed trial keeps them."""

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.step, self.psnr, self.model = state.get("step", 0), state.get("psnr", -math.inf), state.get("model")

    def update(self, step: int, psnr: float, weights: Any) -> None:
        """`weights`: a callable returning the current state_dict (only called when this step is better)."""
        if math.isfinite(psnr) and psnr > self.psnr:
            self.step, self.psnr = step, psnr
            self.model = {k: v.detach().clone() for k, v in weights().items()}

    def state(self) -> dict:
        return {"step": self.step, "psnr": self.psnr, "model": self.model}


def _maybe_fault(ctx: RunContext, step: int, rank: int) -> None:
    """Test hook: kill this worker process once at `fault_kill_at_step` (a marker file makes it once), after
    Train has registered the checkpoints reported so far (so the restart point is deterministic)."""
    if ctx.fault_kill_at_step != step or rank != 0 or ctx.storage_dir is None:
        return
    marker = Path(ctx.storage_dir) / f"fault-killed-at-{step}"
    if not marker.exists():
        import ray.train

        ray.train.get_all_reported_checkpoints()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(1)


@contextlib.contextmanager
def _figure_dir(enabled: bool) -> Iterator[Path | None]:
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _check(trials: list[Trial], state: dict | None) -> None:
    """A checkpoint resumes only the trials it holds (a single trial's, or every member of the group)."""
    if state is None or [m["trial"] for m in checkpoints.member_states(state)] == [t.to_dict() for t in trials]:
        return
    if "members" not in state:
        raise ValueError(f"checkpoint holds trial {Trial.from_dict(state['trial']).key}, not {trials[0].key}")
    raise ValueError("group checkpoint holds other members: "
                     f"{[Trial.from_dict(m['trial']).key for m in state['members']]}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


class _Run:
    """What the loop carries from step to step: the stepper, each member's run, model selection and failures."""

    def __init__(self, trials: list[Trial], ctxs: list[RunContext], session: Any):
        from srprior.trainers.evaluation import held_out, training_data

        cfg, ctx, device = trials[0].config, ctxs[0], session.device
        if device.type == "cpu":
            # a share like 1.9 (a lone run beside its 0.1-CPU driver, which mostly waits) is two threads
            torch.set_num_threads(max(1, round(ctx.cpus_per_worker)))
        else:  # fixed training shapes: cuDNN times its algorithms once per shape and keeps the fastest
            torch.backends.cudnn.benchmark = True
        self.trials, self.ctxs, self.session, self.cfg = trials, ctxs, session, cfg
        train, self.val = training_data(cfg)
        roles = held_out(cfg, self.val)  # before any step: a test image used for model selection is refused
        self.stepper = (Single if len(trials) == 1 else Fused)(trials, ctx, session, train)
        state = session.load()
        _check(trials, state)
        members = checkpoints.member_states(state) if state is not None else [{} for _ in trials]
        if state is not None:
            self.stepper.load(state)
        self.step, self.steps_s = (state["step"], state["steps_s"]) if state is not None else (0, 0.0)
        self.val_psnr = [m.get("val_psnr", math.nan) for m in members]
        self.best = [Best(m.get("best")) for m in members]
        first = Behaviour(ctx, cfg, self.val if session.rank == 0 else None, members[0].get("loss_start"))
        self.behaviours = [first] + [Behaviour(c, t.config, None, m.get("loss_start"), first.bicubic)
                                     for t, c, m in zip(trials[1:], ctxs[1:], members[1:])]
        self.loggers = [RunLogger(t, c, m.get("run_id") or c.resume_run_id, self.step, roles, session.fallback)
                        if session.rank == 0 and c.tracking_uri else None
                        for t, c, m in zip(trials, ctxs, members)]
        self.failed: Found = {}
        self.pending: Found = {}  # found by behaviour on this rank, not yet agreed
        self.first_step_at = self.last_step_at = None

    def alive(self) -> list[int]:
        return [i for i in range(len(self.trials)) if i not in self.failed]

    def fail(self, found: Found) -> None:
        """End the runs of newly failed members FAILED with their step and reason."""
        for i, failure in sorted(found.items()):
            if i not in self.failed:
                self.failed[i] = failure
                if self.loggers[i]:
                    self.loggers[i].fail(*failure)

    def train_step(self, step: int) -> Any:
        lr, hr = self.stepper.batch()
        if self.cfg.optim.learning_rate_milestones:
            self.stepper.set_learning_rate(self.cfg.optim.learning_rate_at(step))
        t = time.time()
        self.first_step_at = self.first_step_at or t
        out = self.stepper.step(step, lr, hr)
        self.last_step_at = time.time()
        self.steps_s += self.last_step_at - t
        return out

    def log(self, step: int, out: Any) -> None:
        """At step 1 and log steps (the host syncs anyway): the loss rule of Behaviour; at log steps, the
        failures every rank agrees on, then the training curves of the members left."""
        totals = out.total.reshape(-1).tolist()
        for i in self.alive():
            if i not in self.pending and (found := self.behaviours[i].loss(step, totals[i])):
                self.pending[i] = found
        if step % self.ctxs[0].log_every:
            return
        self.fail(self.stepper.check(step, self.pending, parameters=False))
        self.pending = {}
        l1, l_ap = out.l1.reshape(-1).tolist(), out.l_ap.reshape(-1).tolist()
        for i in self.alive():
            if self.loggers[i]:
                self.loggers[i].add(step, {contracts.TRAIN_L1: l1[i], contracts.TRAIN_L_AP: l_ap[i],
                                           contracts.TRAIN_LOSS: totals[i]})

    def validate(self, step: int) -> None:
        """Never validate a failed member (non-finite parameters included); rank 0 validates the others, keeps
        the best weights, then the PSNR rule of Behaviour, agreed by every rank."""
        from srprior.evaluate import evaluate
        from srprior.trainers.evaluation import shave

        self.fail(self.stepper.check(step, self.pending, parameters=True))
        self.pending = {}
        if not self.alive():
            return
        found: Found = {}
        if self.session.rank == 0:
            for i in self.alive():
                model = self.stepper.model(i)
                self.val_psnr[i] = evaluate(model, self.val, self.cfg.model.scale, self.session.device,
                                            shave=shave(self.cfg))["psnr"]
                self.best[i].update(step, self.val_psnr[i], model.state_dict)
                if self.loggers[i]:
                    self.loggers[i].add(step, {contracts.OBJECTIVE: self.val_psnr[i]})
                if failure := self.behaviours[i].psnr(step, self.val_psnr[i]):
                    found[i] = failure
        self.fail(self.stepper.check(step, found, parameters=False))

    def selected(self) -> float:
        """The objective Tune/Optuna see: the mean over live members of the best validation PSNR so far, the
        value behind the best-validation weights that every table reports (one selection rule)."""
        return _mean([b.psnr if math.isfinite(b.psnr) else math.nan for b in (self.best[i] for i in self.alive())])

    def progress(self, step: int, out: Any) -> dict[str, Any]:
        alive, totals = self.alive(), out.total.reshape(-1).tolist()
        return {contracts.STEP: step, contracts.OBJECTIVE: self.selected(),
                contracts.TRAIN_LOSS: _mean([totals[i] for i in alive]), contracts.MEMBERS_FAILED: len(self.failed)}

    def checkpoint(self, step: int) -> dict | None:
        """The state to resume from (rank 0; None elsewhere); curves are sent first: a crash in between re-logs
        them, never loses them."""
        for logger in self.loggers:
            if logger:
                logger.flush()
        members = [{"trial": t.to_dict(), "run_id": logger and logger.run_id, "val_psnr": v, "best": b.state(),
                    "loss_start": behaviour.start}
                   for t, logger, v, b, behaviour in zip(self.trials, self.loggers, self.val_psnr, self.best,
                                                         self.behaviours)]
        return self.stepper.checkpoint(members, {"step": step, "steps_s": self.steps_s})

    def timing(self, ctx: RunContext) -> dict[str, float]:
        timing = {contracts.TRAIN_STEPS_S: self.steps_s}  # overhead = trial wall - this (benchmarks/)
        if len(self.trials) > 1:
            timing[contracts.FUSED_MEMBERS] = float(len(self.trials))
        if ctx.trial_started_at:
            timing[contracts.TRIAL_WALL_S] = time.time() - ctx.trial_started_at
            if self.first_step_at:
                timing[contracts.TO_FIRST_STEP_S] = self.first_step_at - ctx.trial_started_at
        return timing

    def final(self, i: int) -> dict[str, float]:
        """Member i's final evaluation (rank 0), logged and returned; {} when its metrics are non-finite."""
        trial, ctx = self.trials[i], self.ctxs[i]
        with _figure_dir(ctx.figures) as figures:
            best = self.best[i]
            metrics, tags, files = selected_metrics(self.stepper.model(i), best.model if best.step != self.step
                                                    else None, trial.config, self.session.device, figures)
            metrics[contracts.BEST_STEP] = float(best.step if best.model is not None else self.step)
            if math.isfinite(best.psnr):  # the selected validation PSNR: what a search optimises, a table reports
                metrics[f"{contracts.SELECTED}{contracts.OBJECTIVE}"] = best.psnr
            if failure := final_failure(self.step, metrics):
                self.fail({i: failure})
                return {}
            metrics.update(self.timing(ctx))
            if self.loggers[i]:
                self.loggers[i].finish(self.step, metrics, tags, files)
        return metrics


def train(trials: list[Trial], ctxs: list[RunContext], session: Any) -> list[dict[str, float]]:
    """Train `trials` (one, or a fused group) to their last step, evaluate and log them; returns rank 0's final
    metrics per member ({} for a failed member and on other ranks). A single trial's last report carries its
    final metrics; a group's carries the mean objective of the members left (Tune requires it)."""
    run, ctx, steps = _Run(trials, ctxs, session), ctxs[0], trials[0].config.schedule.steps
    val_every = trials[0].config.schedule.val_every
    while run.step < steps:
        run.step += 1
        step = run.step
        _maybe_fault(ctx, step, session.rank)
        out = run.train_step(step)
        if step == 1 or step % ctx.log_every == 0:
            run.log(step, out)
        is_ckpt = step % ctx.ckpt_every == 0 or step == steps
        if run.alive() and (is_ckpt or step % val_every == 0):
            run.validate(step)
        if not run.alive():
            break
        if is_ckpt or step % val_every == 0:
            session.report(run.progress(step, out), run.checkpoint(step) if is_ckpt else None)
    finals = [run.final(i) if session.rank == 0 and i in run.alive() else {} for i in range(len(trials))]
    if not run.alive():  # every run ended FAILED; Train and Tune see a finished run (nothing to retry)
        report_failed(session, run.step, len(trials))
        return [{} for _ in trials]
    report = {contracts.STEP: run.step, contracts.OBJECTIVE: run.selected(),
              contracts.MEMBERS_FAILED: len(run.failed), **(finals[0] if len(trials) == 1 else {})}
    if run.first_step_at:  # this attempt's training window, for aggregate throughput across trials
        report.update({contracts.FIRST_STEP_UNIX: run.first_step_at, contracts.LAST_STEP_UNIX: run.last_step_at})
    session.report(report, None)
    return [report] if len(trials) == 1 and finals[0] else finals
