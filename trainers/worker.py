"""Per-worker side of a Train run: the sessions the training loop talks to, and Ray Train's entry point.

`session` is the only thing that differs between Ray Train (`RaySession`: ranks, DDP, checkpoints registered
with Train, read back through srprior.trainers.checkpoints' fallback) and a plain process (`LocalSession`: one
rank, checkpoints kept in memory — tests and the two-step smoke test of every table row run this way). The
training itself is srprior.trainers.loop.train, for one trial or a fused group alike.

A worker that dies resumes from the last checkpoint Train registered (model, optimiser, step, every rank's RNG
and sampler state, the trial and the MLflow run id) and re-trains the same steps with the same randomness; the
curves stay exactly-once (srprior.trainers.runlog).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from srprior.trainers import checkpoints
from srprior.trainers.loop import train


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

        checkpoint = ray.train.get_checkpoint()
        if not checkpoint:
            return None
        state, self.fallback = checkpoints.load_intact(checkpoint, self.device)
        return state

    def report(self, metrics: dict[str, Any], state: dict | None) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as d:
            saved = None
            if state is not None:
                checkpoints.write(state, Path(d))
                saved = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=saved)



def _quiet_reports() -> None:
    """Drop Ray Train's INFO lines per report and per checkpoint (hundreds in a table sweep)."""
    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    module = sys.modules.get("ray.train.v2._internal.execution.context")  # logger named after its file
    if module is not None:
        logging.getLogger(module.__file__).setLevel(logging.WARNING)


def train_fn_per_worker(config: dict) -> None:
    """Ray Train's entry point: {"trials": [Trial], "contexts": [RunContext]} built and validated by the
    driver; several trials are a fused group (srprior.trainers.steppers.Fused)."""
    from srprior.trainers import health

    _quiet_reports()
    session = RaySession()
    try:
        train(config["trials"], config["contexts"], session)
    except Exception as exc:  # noqa: BLE001 - what would repeat on every retry is not raised to Train (health)
        health.end_without_retry(config["trials"], config["contexts"], session, exc)
