"""Per-worker training: a typed Trial and RunContext in, metrics and checkpoints out; knows nothing of the sweep.

`train_trial(trial, ctx, session)` is the whole training run. `session` is the only thing that differs between
Ray Train (`RaySession`: ranks, DDP, checkpoints registered with Train) and a plain process (`LocalSession`: one
rank, checkpoints kept in memory — tests and the two-step smoke test of every table row run this way).

Every rank builds the model (DDP through the session when the trial has several workers), samples its own patch
stream (seed + rank) and steps with srprior.method.step.TrainStep. Rank 0 validates, logs to MLflow and writes
checkpoints; every rank reports at the same steps (Train's barrier).

Exactly-once metrics across worker deaths: curve points are buffered and sent to MLflow right before each
checkpoint. A worker that dies resumes from the last checkpoint Train registered (model, optimiser, step, every
rank's RNG and sampler state, the trial and the MLflow run id) and re-trains the same steps with the same
randomness; points up to the step the run already holds are not sent again, so every point is logged exactly
once, into the same MLflow run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srprior import contracts
from srprior.schema import RunContext, Trial
from srprior.trainers import checkpoints

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch
WATERMARK_CURVES = ("train/loss", "val/psnr")  # their last logged step is the resume watermark


def open_run(client: Any, trial: Trial, ctx: RunContext, run_id: str | None = None) -> str:
    """The MLflow run of `trial`: `run_id` (a checkpoint's or the planner's), else the run with its key (a new
    one under --retrain), created when missing. The Tune driver opens it when the trial starts, so the run's
    duration is the trial's."""
    from srprior import tracking

    exp = tracking.experiment_id(client, ctx.experiment or "srprior/adhoc")
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


# ---------------------------------------------------------------------------------------------- sessions
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


# ---------------------------------------------------------------------------------------------- model selection
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


def selected_metrics(net: torch.nn.Module, best: Best, cfg: Any, device: torch.device,
                     figures: Path | None, step: int) -> tuple[dict[str, float], dict[str, str], list[Path]]:
    """Final evaluation of the best-validation weights (best/…, with the figures) and of the last step's
    (final/…), plus best_step; one evaluation when they are the same weights."""
    import copy

    from srprior.trainers.evaluation import bicubic_metrics, final_metrics

    if best.model is None or best.step == step:
        chosen, tags, files = final_metrics(net, cfg, device, figures)
        last = chosen
    else:
        selected = copy.deepcopy(net)
        selected.load_state_dict(best.model)
        chosen, tags, files = final_metrics(selected, cfg, device, figures)
        last, _, _ = final_metrics(net, cfg, device, None)
    metrics = {**{f"{contracts.SELECTED}{k}": v for k, v in chosen.items()},
               **{f"{contracts.LAST}{k}": v for k, v in last.items()},
               contracts.BEST_STEP: float(best.step if best.model is not None else step), **bicubic_metrics(cfg)}
    return metrics, tags, files


# ---------------------------------------------------------------------------------------------- RNG
def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generator": generator.get_state()}


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])


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


def _quiet_reports() -> None:
    """Drop Ray Train's INFO lines per report and per checkpoint (hundreds in a table sweep)."""
    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    module = sys.modules.get("ray.train.v2._internal.execution.context")  # logger named after its file
    if module is not None:
        logging.getLogger(module.__file__).setLevel(logging.WARNING)


@contextlib.contextmanager
def _figure_dir(enabled: bool) -> Iterator[Path | None]:
    if not enabled:
        yield None
        return
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# ---------------------------------------------------------------------------------------------- training
def train_fn_per_worker(config: dict) -> None:
    """Ray Train's entry point: {"trials": [Trial], "contexts": [RunContext]} built and validated by the
    driver; several trials are a fused group (srprior.trainers.group)."""
    from srprior.trainers import health

    _quiet_reports()
    session = RaySession()
    try:
        if len(config["trials"]) == 1:
            train_trial(config["trials"][0], config["contexts"][0], session)
        else:
            from srprior.trainers.group import train_group

            train_group(config["trials"], config["contexts"], session)
    except Exception as exc:  # noqa: BLE001 - what would repeat on every retry is not raised to Train (health)
        health.end_without_retry(config["trials"], config["contexts"], session, exc)


def train_trial(trial: Trial, ctx: RunContext, session: Any) -> dict[str, float]:
    """Train `trial` to its last step, evaluate it, log it; returns rank 0's final metrics ({} on other ranks)."""
    from srprior.archs import build_model
    from srprior.data.datasets import PatchSampler
    from srprior.evaluate import evaluate
    from srprior.method.step import TrainStep, make_optimizer
    from srprior.trainers.evaluation import held_out, shave, training_data
    from srprior.trainers.health import Behaviour, Divergence, agree, final_failure, report_failed

    cfg, rank, world, device = trial.config, session.rank, session.world, session.device
    scale, sched = cfg.model.scale, cfg.schedule
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(ctx.cpus_per_worker)))
    else:  # fixed training shapes: cuDNN times its algorithms once per shape and keeps the fastest
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(trial.seed)  # identical initial weights on every rank
    train, val = training_data(cfg)
    roles = held_out(cfg, val)  # before any step: a test image used for model selection is refused
    net = build_model(cfg.model.preset, scale)
    model = session.prepare(net)  # moves to the device; DDP when world > 1
    net = getattr(model, "module", model)
    optimizer = make_optimizer(model, cfg.optim.learning_rate, cfg.optim.weight_decay)
    generator = torch.Generator(device=device).manual_seed(trial.seed * 1000 + rank)
    train_step = TrainStep(model, optimizer, cfg.prior, scale, bf16=cfg.model.bf16, cuda_graph=ctx.cuda_graph,
                           generator=None if ctx.cuda_graph else generator, l1_reduction=cfg.optim.l1_reduction)
    sampler = PatchSampler(train, scale, sched.lr_patch, sched.batch, seed=trial.seed * 1000 + rank)

    step, run_id, val_psnr, steps_s, best = 0, None, math.nan, 0.0, Best()
    state = session.load()
    if state is not None:
        if state["trial"] != trial.to_dict():
            raise ValueError(f"checkpoint holds trial {Trial.from_dict(state['trial']).key}, not {trial.key}")
        if len(state["sampler"]) != world:
            raise ValueError(f"checkpoint was written by {len(state['sampler'])} workers, this trial has {world}; "
                             "resume with the same number of workers")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"][rank])
        _set_rng_state(state["rng"][rank], generator)
        step, run_id, val_psnr, steps_s = state["step"], state["run_id"], state["val_psnr"], state["steps_s"]
        best = Best(state["best"])
    run_id = run_id or ctx.resume_run_id
    logger = RunLogger(trial, ctx, run_id, step, roles, session.fallback) if rank == 0 and ctx.tracking_uri \
        else None

    first_step_at = last_step_at = None
    out, failure = None, None
    health = Divergence(device, Behaviour(ctx, cfg, val if rank == 0 else None, (state or {}).get("loss_start")))
    while step < sched.steps:
        step += 1
        _maybe_fault(ctx, step, rank)
        lr, hr = sampler.next()
        if cfg.optim.lr_milestones:
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.rate(step)
        t = time.time()
        first_step_at = first_step_at or t
        out = train_step(lr.to(device, non_blocking=True), hr.to(device, non_blocking=True))
        health.track(step, out.total)
        if step % ctx.log_every == 0 and (failure := health.check(session, step)):  # loss: health.behaviour too
            break
        if step % ctx.log_every == 0 and logger:
            logger.add(step, {"train/l1": out.l1.item(), "train/l_ap": out.l_ap.item(),
                              "train/loss": out.total.item()})
        last_step_at = time.time()
        steps_s += last_step_at - t
        is_ckpt = step % ctx.ckpt_every == 0 or step == sched.steps
        if not (is_ckpt or step % sched.val_every == 0):
            continue
        if failure := health.check(session, step, net):  # never validate, checkpoint or evaluate it
            break
        if rank == 0:
            val_psnr = evaluate(net, val, scale, device, shave=shave(cfg))["psnr"]
            best.update(step, val_psnr, net.state_dict)
        metrics = {"step": step, contracts.OBJECTIVE: val_psnr, "train/loss": out.total.item()}
        if logger:
            logger.add(step, {contracts.OBJECTIVE: val_psnr})
        if failure := agree(session, health.behaviour.psnr(step, val_psnr) if rank == 0 else None):
            break
        states = session.gather((sampler.state_dict(), _rng_state(generator)))
        saved = None
        if is_ckpt and rank == 0:
            if logger:
                logger.flush()  # before the checkpoint: a crash in between re-logs, never loses
            saved = {"trial": trial.to_dict(), "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": step, "sampler": [s for s, _ in states], "rng": [r for _, r in states],
                     "run_id": logger and logger.run_id, "val_psnr": val_psnr, "steps_s": steps_s,
                     "best": best.state(), "loss_start": health.behaviour.start}
        session.report(metrics, saved)

    final: dict[str, Any] = {"step": step, contracts.OBJECTIVE: val_psnr}
    if rank == 0 and failure is None:
        with _figure_dir(ctx.figures) as figures:
            metrics, tags, files = selected_metrics(net, best, cfg, device, figures, step)
            timing = {"system/train_steps_s": steps_s}  # overhead = trial wall - this (benchmarks/)
            failure = final_failure(step, metrics)
            if ctx.trial_started_at:
                timing["system/trial_wall_s"] = time.time() - ctx.trial_started_at
                if first_step_at:
                    timing["system/to_first_step_s"] = first_step_at - ctx.trial_started_at
            if logger and failure is None:
                logger.finish(step, {**metrics, **timing}, tags, files)
            final.update(metrics, **timing)
            if first_step_at:  # this attempt's training window, for aggregate throughput across trials
                final.update({"system/first_step_unix": first_step_at, "system/last_step_unix": last_step_at})
    if failure is not None:  # the run ends FAILED; Train and Tune see a finished run (nothing to retry)
        if logger:
            logger.fail(*failure)
        report_failed(session, step, 1)
        return {}
    session.report(final, None)
    return final if rank == 0 else {}

