"""Rank 0's MLflow run of a trial: found by content (run key) or created, buffered curves, final metrics.

Exactly-once metrics across worker deaths: curve points are buffered and sent right before each checkpoint
(srprior.trainers.loop). A resumed worker re-trains the steps after the last checkpoint with the same randomness;
points up to the step the run already holds (the watermark curves' last step) are not sent again, so every point
is logged exactly once, into the same MLflow run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from srprior import contracts
from srprior.schema import RunContext, Trial

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch
WATERMARK_CURVES = (contracts.TRAIN_LOSS, contracts.OBJECTIVE)  # their last logged step is the resume watermark


def open_run(client: Any, trial: Trial, ctx: RunContext, run_id: str | None = None) -> str:
    """The MLflow run of `trial`: `run_id` (a checkpoint's or the planner's), else the run with its key (a new
    one under --retrain), created when missing. The Tune driver opens it when the trial starts, so the run's
    duration is the trial's."""
    from srprior import tracking

    exp = tracking.experiment_id(client, ctx.experiment or contracts.ADHOC_EXPERIMENT)
    key = {contracts.ROLE: "trial", contracts.RUN_KEY: trial.key}
    if ctx.retrain:
        key[contracts.RETRAIN] = ctx.sweep_id
    table, row = ctx.labels[0] if ctx.labels else ("adhoc", "default")
    extra = {contracts.SWEEP_ID: ctx.sweep_id, contracts.CONFIG_HASH: trial.config.hash,
             contracts.TABLE: table, contracts.ROW: row, contracts.SEED: str(trial.seed),
             **({contracts.PARENT: ctx.parent_run_id} if ctx.parent_run_id else {})}
    run_id = tracking.get_or_create_run(client, exp, key, f"{row}/seed-{trial.seed}", extra, run_id)
    if ctx.sweep_id:  # the sweep whose lease tells whether this RUNNING run is live (srprior.locks)
        client.set_tag(run_id, contracts.OWNER, ctx.sweep_id)
    return run_id


class RunLogger:
    """Rank 0's MLflow run, found by content (run key) or created; buffered curves, final metrics."""

    def __init__(self, trial: Trial, ctx: RunContext, run_id: str | None, resumed_at: int,
                 images: dict[str, Any] | None = None, fallback: str | None = None):
        from mlflow.entities import Param, RunTag

        from srprior import tracking

        self.client = tracking.client(ctx.tracking_uri)
        self.run_id = open_run(self.client, trial, ctx, run_id)
        tags = [RunTag(contracts.RESUMED_AT, str(resumed_at))] if resumed_at else []
        if fallback:  # the newest checkpoint(s) could not be read (srprior.trainers.checkpoints)
            tags.append(RunTag(contracts.CHECKPOINT_FALLBACK, fallback[:4000]))
        params = {**trial.config.params(), "seed": str(trial.seed)}
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in params.items()], tags=tags)
        if images is not None:  # which images selected the model and which report it (disjoint)
            self.client.log_dict(self.run_id, images, contracts.IMAGES_ARTIFACT)
        self._logged = max((m.step for key in WATERMARK_CURVES
                            for m in self.client.get_metric_history(self.run_id, key)), default=0)
        self._buffer: list = []

    def add(self, step: int, values: dict[str, float], curve: bool = True) -> None:
        from mlflow.entities import Metric

        if curve and step <= self._logged:  # already in the run (sent before a worker died)
            return
        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, step) for k, v in values.items() if math.isfinite(v)]

    def flush(self) -> None:
        for i in range(0, len(self._buffer), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=self._buffer[i:i + MAX_BATCH])
        self._buffer = []

    def fail(self, step: int, reason: str) -> None:
        """End the run FAILED with the step and the reason (shown by the report as failed, never as a value)."""
        from mlflow.entities import RunTag

        self.flush()
        self.client.log_batch(self.run_id, tags=[RunTag(contracts.FAILURE, f"step {step}: {reason}")])
        self.client.set_terminated(self.run_id, "FAILED")

    def finish(self, step: int, metrics: dict[str, float], tags: dict[str, str], files: list[Path]) -> None:
        from mlflow.entities import RunTag

        self.add(step, metrics, curve=False)
        self.flush()
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        for path in files:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")
        self.client.set_terminated(self.run_id, "FINISHED")
