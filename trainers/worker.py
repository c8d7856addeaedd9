"""Ray Train per-worker training function: config in, metrics and checkpoints out; knows nothing of the sweep.

Every rank builds the model (DDP through prepare_model when the trial has several workers), samples its own patch
stream (seed + rank) and steps with srprior.method.step.TrainStep. Rank 0 validates, logs to MLflow and writes
checkpoints; every rank calls ray.train.report at the same steps (Train's barrier).

Exactly-once metrics across worker deaths: curve points are buffered and sent to MLflow right before each
checkpoint. A worker that dies resumes from the last checkpoint Train registered (model, optimiser, step, every
rank's RNG and sampler state, MLflow run id) and re-trains the same steps with the same randomness; points up to
the step the run already holds are not sent again (a checkpoint reported just before the death may not have been
registered), so every point is logged exactly once, into the same MLflow run.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srprior.trainers.config import TrialConfig

STATE_FILE = "state.pt"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch
CURVES = ("train/loss", "val/psnr")  # their last logged step is the resume watermark


class RunLogger:
    """Rank 0's MLflow run: get-or-create by (sweep id, table, row, seed), buffered curves, final metrics."""

    def __init__(self, cfg: TrialConfig, run_id: str | None, resumed_at: int):
        from mlflow.entities import Param, RunTag

        from srprior import tracking

        self.client = tracking.client(cfg.tracking_uri)
        exp = tracking.experiment_id(self.client, cfg.experiment or f"srprior/table-{cfg.table}")
        key = {"srprior.role": "trial", "srprior.sweep_id": cfg.sweep_id, "table": cfg.table, "row": cfg.row,
               "seed": str(cfg.seed)}
        extra = {"mlflow.parentRunId": cfg.parent_run_id} if cfg.parent_run_id else {}
        self.run_id = tracking.get_or_create_run(self.client, exp, key, f"{cfg.row}/seed-{cfg.seed}", extra, run_id)
        tags = [RunTag("srprior.resumed_at_step", str(resumed_at))] if resumed_at else []
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in cfg.params().items()], tags=tags)
        self._logged = max((m.step for key in CURVES for m in self.client.get_metric_history(self.run_id, key)),
                           default=0)
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

    def finish(self, step: int, metrics: dict[str, float], tags: dict[str, str], files: list[Path]) -> None:
        from mlflow.entities import RunTag

        self.add(step, metrics, curve=False)
        self.flush()
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        for path in files:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")
        self.client.set_terminated(self.run_id, "FINISHED")


def _gather(obj: Any, world: int) -> list:
    """Every rank's `obj`, in rank order (checkpoints hold all ranks' RNG and sampler states)."""
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


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


def _maybe_fault(cfg: TrialConfig, step: int, rank: int) -> None:
    """Test hook: kill this worker process once at `fault_kill_at_step` (a marker file makes it once), after
    Train has registered the checkpoints reported so far (so the restart point is deterministic)."""
    if cfg.fault_kill_at_step != step or rank != 0 or cfg.storage_dir is None:
        return
    marker = Path(cfg.storage_dir) / f"fault-killed-at-{step}"
    if not marker.exists():
        import ray.train

        ray.train.get_all_reported_checkpoints()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(1)


def _quiet_reports() -> None:
    """Drop Ray Train's INFO lines per report and per checkpoint (hundreds in a table sweep)."""
    import sys

    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    module = sys.modules.get("ray.train.v2._internal.execution.context")  # logger named after its file
    if module is not None:
        logging.getLogger(module.__file__).setLevel(logging.WARNING)


def train_fn_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    from srprior.archs import build_model
    from srprior.data.datasets import PatchSampler
    from srprior.evaluate import evaluate
    from srprior.method.prior import prior_config
    from srprior.method.step import TrainStep, make_optimizer
    from srprior.trainers.evaluation import final_metrics, training_data

    _quiet_reports()
    cfg = TrialConfig.from_dict(config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    train, val = training_data(cfg)
    net = build_model(cfg.preset, cfg.scale)
    model = ray.train.torch.prepare_model(net)  # moves to the device; DDP when world > 1
    net = getattr(model, "module", model)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank)
    prior = prior_config(lambda_ap=cfg.lambda_ap, w=cfg.w, n_ssr=cfg.n_ssr, scenario=cfg.scenario,
                         poi_size=cfg.poi_size)
    train_step = TrainStep(model, optimizer, prior, cfg.scale, bf16=cfg.bf16, cuda_graph=cfg.cuda_graph,
                           generator=generator)
    sampler = PatchSampler(train, cfg.scale, cfg.patch, cfg.batch, seed=cfg.seed * 1000 + rank)

    step, run_id, val_psnr, steps_s = 0, None, math.nan, 0.0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=False)
        if len(state["sampler"]) != world:
            raise ValueError(f"checkpoint was written by {len(state['sampler'])} workers, this trial has {world}; "
                             "resume with the same num_workers")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"][rank])
        _set_rng_state(state["rng"][rank], generator)
        step, run_id, val_psnr, steps_s = state["step"], state["run_id"], state["val_psnr"], state["steps_s"]
    logger = RunLogger(cfg, run_id, step) if rank == 0 and cfg.tracking_uri else None

    first_step_at = last_step_at = None
    while step < cfg.steps:
        step += 1
        _maybe_fault(cfg, step, rank)
        lr, hr = sampler.next()
        t = time.time()
        first_step_at = first_step_at or t
        out = train_step(lr.to(device, non_blocking=True), hr.to(device, non_blocking=True))
        if step % cfg.log_every == 0 and logger:
            logger.add(step, {"train/l1": out.l1.item(), "train/l_ap": out.l_ap.item(),
                              "train/loss": out.total.item()})
        last_step_at = time.time()
        steps_s += last_step_at - t
        is_ckpt = step % cfg.ckpt_every == 0 or step == cfg.steps
        if not (is_ckpt or step % cfg.val_every == 0):
            continue
        if rank == 0:
            val_psnr = evaluate(net, val, cfg.scale, device)["psnr"]
        metrics = {"step": step, "val/psnr": val_psnr, "train/loss": out.total.item()}
        if logger:
            logger.add(step, {"val/psnr": val_psnr})
        states = _gather((sampler.state_dict(), _rng_state(generator)), world)
        with tempfile.TemporaryDirectory() as d:
            saved = None
            if is_ckpt and rank == 0:
                if logger:
                    logger.flush()  # before the checkpoint: a crash in between re-logs, never loses
                torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                            "sampler": [s for s, _ in states], "rng": [r for _, r in states],
                            "run_id": logger and logger.run_id, "val_psnr": val_psnr, "steps_s": steps_s},
                           Path(d) / STATE_FILE)
                saved = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=saved)

    final = {"step": step, "val/psnr": val_psnr}
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            metrics, tags, files = final_metrics(net, cfg, val, device, Path(d) if cfg.figures else None)
            timing = {"time/train_steps_s": steps_s}  # overhead = trial wall - this (benchmarks/)
            if cfg.trial_started_at:
                timing["time/trial_wall_s"] = time.time() - cfg.trial_started_at
                if first_step_at:
                    timing["time/to_first_step_s"] = first_step_at - cfg.trial_started_at
            if logger:
                logger.finish(step, {**metrics, **timing}, tags, files)
            final.update(metrics, **timing)
            if first_step_at:  # this attempt's training window, for aggregate throughput across trials
                final.update({"time/first_step_unix": first_step_at, "time/last_step_unix": last_step_at})
    ray.train.report(final)
