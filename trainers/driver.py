"""The Tune trainable: a small driver that turns one Tune config into a typed Trial and runs a Ray Train run.

Ray 2.60 Train V2 no longer accepts `Tuner(TorchTrainer)`: each Tune trial is this function, which launches a
DataParallelTrainer (with TorchConfig's process group when the trial is DDP) and returns; TuneReportCallback forwards rank 0's reports to Tune. The Train run is named after the
trial's content address (`train-<key>`, or a digest of a fused group's keys, in a folder shared by every sweep of the output folder), so any sweep
that needs an unfinished trial — a restarted Tune trial, `--resume`, or another table with the same row —
resumes it from its last checkpoint; FailureConfig restarts dead workers from that checkpoint within the trial.
Only one trainer at a time: the driver holds a lease per trial key beside the Train folders (srprior.locks); a
trial that another live sweep is training is waited for and its FINISHED run reused, never reopened.

Tune config shapes: table mode {"members": [{"trial": Trial.to_dict(), "labels", "experiment", "parent_run_id",
"resume_run_id"}, ...]} (one member, or a fused group: srprior.trainers.steppers.Fused); search mode the
Optuna-sampled science fields plus Repeater's `__trial_index__` (the seed), merged over the sweep's base science.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from srprior.schema import RunContext, Trial, trial_config

TRIAL_INDEX = "__trial_index__"  # ray.tune.search.repeater.TRIAL_INDEX


def make_trials(config: dict[str, Any], science: dict[str, Any]) -> list[tuple[Trial, dict[str, Any]]]:
    """[(Trial, context changes)] of one Tune config (see the module docstring): one, or a fused group."""
    if "trial" in config:  # table mode: param_space {"trial": grid_search([{"members": [entry, ...]}, ...])}
        out = []
        for entry in config["trial"]["members"]:
            changes = {k: entry[k] for k in ("experiment", "parent_run_id", "resume_run_id") if k in entry}
            out.append((Trial.from_dict(entry["trial"]),
                        {**changes, "labels": tuple(map(tuple, entry.get("labels", ())))}))
        return out
    sampled = {k: v for k, v in config.items() if k != TRIAL_INDEX}
    trial = Trial(trial_config("search sample", **{**science, **sampled}), int(config.get(TRIAL_INDEX, 0)))
    return [(trial, {"labels": (("search", f"cfg-{trial.config.hash[:8]}"),)})]


def train_name(trials: list[Trial], ctx: RunContext) -> str:
    """The Train run folder: by content (the key, or a digest of a fused group's keys), plus the sweep id when
    this sweep retrains it."""
    if len(trials) == 1:
        name = f"train-{trials[0].key}"
    else:
        name = "train-group-" + hashlib.sha256(" ".join(t.key for t in trials).encode()).hexdigest()[:16]
    return name + (f"-{ctx.sweep_id}" if ctx.retrain else "")


def train_driver(config: dict[str, Any], science: dict[str, Any], context: RunContext, storage_path: str,
                 max_failures: int) -> None:
    """One Tune trial: under the leases of its trial keys (srprior.locks.trial_leases: another sweep training
    one of them is waited for, the progress line says so), the members whose runs are FINISHED by then are
    reused, never touched; the others train as one Ray Train run."""
    import ray.tune

    from srprior import contracts, credentials, locks

    credentials.adopt()  # a cluster's tracking credentials: read from shared storage, never carried in Ray's env
    members = make_trials(config, science)
    if "://" in storage_path:  # object storage has no locks: the sweep lease is all (srprior.locks)
        return _train(members, context, storage_path, max_failures)

    def waiting(holder: str) -> None:
        ray.tune.report({contracts.STEP: 0, contracts.OBJECTIVE: float("nan"), contracts.WAITING: holder})

    names = [t.key + (f"-{context.sweep_id}" if context.retrain else "") for t, _ in members]
    with locks.trial_leases(storage_path, names, context.sweep_id or "srprior", waiting):
        done = _finished_elsewhere([t for t, _ in members], context)
        if done and len(done) == len(members):
            metric = [r.data.metrics.get(contracts.SELECTED + contracts.OBJECTIVE,  # the selected value (loop.py)
                                         r.data.metrics.get(contracts.OBJECTIVE, float("nan"))) for r in done.values()]
            ray.tune.report({contracts.STEP: 0, contracts.OBJECTIVE: sum(metric) / len(metric),
                             contracts.MEMBERS_REUSED: len(done)})
            return None
        return _train([m for m in members if m[0].key not in done], context, storage_path, max_failures)


def _finished_elsewhere(trials: list[Trial], context: RunContext) -> dict[str, Any]:
    """The FINISHED runs of `trials` (by key): another sweep trained them since this one planned (while it waited
    for their lease, or before its trial started). Reused, never reopened: a FINISHED run is never modified."""
    if not context.tracking_uri or context.retrain:
        return {}
    from srprior import tracking

    runs = tracking.runs_by_key(context.tracking_uri, {t.key for t in trials})
    return {k: r for k, r in runs.items() if r.info.status == "FINISHED"}


def _train(members: list[tuple[Trial, dict[str, Any]]], context: RunContext, storage_path: str,
           max_failures: int) -> None:
    import ray.train
    from ray.train.torch import TorchConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from srprior.trainers.worker import train_fn_per_worker

    trials, started = [t for t, _ in members], time.time()
    name = train_name(trials, context)
    ctxs = [context.replace(**changes, trial_started_at=started, storage_dir=os.path.join(storage_path, name))
            for _, changes in members]
    if context.tracking_uri:  # open the runs now: their MLflow duration is the trial's, start-up included
        from srprior import tracking
        from srprior.trainers.runlog import open_run

        client = tracking.client(context.tracking_uri)
        ctxs = [c.replace(resume_run_id=open_run(client, t, c, c.resume_run_id)) for t, c in zip(trials, ctxs)]
    ctx = ctxs[0]
    if "://" not in storage_path:  # a snapshot a full disk cut would fail every start of the run
        from srprior.trainers.checkpoints import drop_unreadable_snapshot

        drop_unreadable_snapshot(Path(storage_path) / name)
    resources = {"CPU": ctx.cpus_per_worker, **({"GPU": ctx.gpus_per_worker} if ctx.use_gpu else {})}
    # A torch process group only for DDP: one rank has no peer, and the group's TCPStore would listen on every
    # interface (torch binds it to the wildcard address).
    ddp = {"backend_config": TorchConfig(backend="nccl" if ctx.use_gpu else "gloo")} if ctx.num_workers > 1 else {}
    DataParallelTrainer(
        train_fn_per_worker,
        train_loop_config={"trials": trials, "contexts": ctxs},
        scaling_config=ray.train.ScalingConfig(num_workers=ctx.num_workers, use_gpu=ctx.use_gpu,
                                               resources_per_worker=resources),
        **ddp,
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=max_failures)),
    ).fit()
