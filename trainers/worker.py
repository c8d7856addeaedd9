"""Per-worker side of a Train run: the sessions the training loop talks to, and Ray Train's entry point.

`session` is the only thing that differs between Ray Train (`RaySession`: ranks, DDP, checkpoints registered
with Train, read back through srprior.trainers.checkpoints' fallback) and a plain process (`LocalSession`: one
rank, checkpoints kept in memory — tests and the two-step smoke test of every table row run this way). The
training itself is srprior.trainers.loop.train, for one trial or a fused group alike.

A worker that dies resumes from the last checkpoint Train registered (model, optimiser, step, every rank's RNG
and sampler state, the trial and the MLflow run id) and re-trains the same steps with the same randomness; the
curves stay exactly-once (srprior.trainers.runlog). Every report to Train is bounded (`hand_off`): a report that
Train does not take in time raises instead of waiting forever.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from srprior import contracts
from srprior.trainers import checkpoints
from srprior.trainers.loop import train


REPORT_S = 3600.0  # a report may wait at Train's barrier for rank 0's final evaluation: generous, but a bound
AFTER_FAILURE_S = 60.0  # the report after a failed one: the sweep must stop within a minute (srprior.watchdog)


class ReportTimeout(RuntimeError):
    """Ray Train did not take a report in time (its controller gone, or its report order broken)."""


class LocalSession:
    """One process, one rank: checkpoints stay in memory (the last one is `checkpoint`), reports are kept."""

    rank, world, fallback = 0, 1, None

    def __init__(self, device: str | torch.device = "cpu", checkpoint: dict | None = None):
        self.device = torch.device(device)
        self.checkpoint, self.reports = checkpoint, []

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    def gather(self, obj: Any) -> list:
        return [obj]

    def load(self) -> dict | None:
        return self.checkpoint

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        self.reports.append(metrics)
        if state is not None:
            self.checkpoint = state


class RaySession:
    """Ray Train: rank and world from the context, DDP via prepare_model, checkpoints as Train Checkpoints."""

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.fallback: str | None = None  # set by load(): which checkpoints were unreadable
        self.failed = False  # a report raised or timed out: the next one gets AFTER_FAILURE_S

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def gather(self, obj: Any) -> list:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def load(self) -> dict | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint() or checkpoints.newest_in(ray.train.get_context().get_storage())
        if not checkpoint:
            return None
        state, self.fallback = checkpoints.load_intact(checkpoint, self.device)
        return state

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        """Hands `metrics` (and `state` as a checkpoint) to Train, bounded: REPORT_S, or AFTER_FAILURE_S once a
        report has failed (the report that ends the run FAILED, or stops the sweep on a full disk)."""
        import ray.train

        with tempfile.TemporaryDirectory() as d:
            saved = None
            if state is not None:
                checkpoints.write(state, Path(d))
                saved = ray.train.Checkpoint.from_directory(d)
                metrics = {**metrics, contracts.CHECKPOINT_BYTES: sum(f.stat().st_size for f in Path(d).iterdir())}
            try:
                hand_off(lambda: ray.train.report(metrics, checkpoint=saved),
                         AFTER_FAILURE_S if self.failed else REPORT_S, metrics.get("step"))
            except BaseException:
                self.failed = True
                raise


def hand_off(report: Callable[[], None], timeout: float, step: Any = None) -> None:
    """Run `report` (a ray.train.report call) for at most `timeout` s, then raise ReportTimeout. Ray 2.60's
    report takes its slot in the worker's report order before it uploads the checkpoint, and an upload that
    fails (a full disk) never gives it back: every later report would wait forever for it. So a report that
    raises gives its slot back (the private TrainContext counters, as Ray does itself for a reset barrier)."""
    from ray.train.v2._internal.execution.context import get_train_context

    context = get_train_context()
    taken = getattr(context, "report_call_index", None)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            report()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - raised again in the training thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="srprior-report", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise ReportTimeout(f"Ray Train did not take the report of step {step} within {timeout:.0f} s")
    if outcome[0] is not None:
        if taken is not None and context.report_call_index == taken + 1 == context.current_report_index + 1:
            context.report_call_index = taken
        raise outcome[0]


def _quiet_reports() -> None:
    """Drop Ray Train's INFO lines per report and per checkpoint (hundreds in a table sweep)."""
    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    module = sys.modules.get("ray.train.v2._internal.execution.context")  # logger named after its file
    if module is not None:
        logging.getLogger(module.__file__).setLevel(logging.WARNING)


def train_fn_per_worker(config: dict) -> None:
    """Ray Train's entry point: {"trials": [Trial], "contexts": [RunContext]} built and validated by the
    driver; several trials are a fused group (srprior.trainers.steppers.Fused)."""
    from srprior import credentials
    from srprior.trainers import health

    credentials.adopt()
    _quiet_reports()
    session = RaySession()
    try:
        train(config["trials"], config["contexts"], session)
    except Exception as exc:  # noqa: BLE001 - what would repeat on every retry is not raised to Train (health)
        health.end_without_retry(config["trials"], config["contexts"], session, exc)
