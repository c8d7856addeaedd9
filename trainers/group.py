"""Fused trials: K members (seeds of a row, or rows differing only in λ_AP / w) trained as one
srprior.method.fused.FusedTrainStep inside one Ray Train worker — one start-up, one GPU share.

Each member keeps everything a separate trial has: its initial weights (seeded like `train_trial`), its own data
stream and generator, its own MLflow run (found or created by its key, as in worker.RunLogger), curves, final
evaluation and figures, and its slice of the group checkpoint. A member whose loss or weights turn non-finite is
frozen by the fused step; here its run ends FAILED with the step and the reason, and the others go on untouched.
Groups are single-worker (no DDP): fusion is for models too small to fill one device.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from srprior import contracts
from srprior.schema import RunContext, Trial
from srprior.trainers.worker import (Best, RunLogger, _figure_dir, _maybe_fault, _rng_state, _set_rng_state,
                                     selected_metrics)


def _check(trials: list[Trial], state: dict | None) -> None:
    if state is not None and [m["trial"] for m in state["members"]] != [t.to_dict() for t in trials]:
        raise ValueError("group checkpoint holds other members: "
                         f"{[Trial.from_dict(m['trial']).key for m in state['members']]}")


def train_group(trials: list[Trial], ctxs: list[RunContext], session: Any) -> list[dict[str, float]]:
    """Train the fused group to its last step; per member its final metrics ({} for a failed member)."""
    from srprior.archs import build_model
    from srprior.data.datasets import PatchSampler
    from srprior.evaluate import evaluate
    from srprior.method.fused import FusedTrainStep
    from srprior.trainers.evaluation import held_out, shave, training_data
    from srprior.trainers.health import Behaviour

    if session.world != 1:
        raise ValueError("fused groups train in one worker (no DDP); use --fuse 1 with --workers N")
    cfg, ctx, device = trials[0].config, ctxs[0], session.device
    scale, sched = cfg.model.scale, cfg.schedule
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(ctx.cpus_per_worker)))
    else:  # fixed training shapes: cuDNN times its algorithms once per shape and keeps the fastest
        torch.backends.cudnn.benchmark = True
    train, val = training_data(cfg)
    roles = held_out(cfg, val)
    models = []
    for t in trials:  # the initial weights a separate trial of this seed would get
        torch.manual_seed(t.seed)
        models.append(build_model(t.config.model.preset, scale).to(device))
    generators = [torch.Generator(device=device).manual_seed(t.seed * 1000) for t in trials]
    samplers = [PatchSampler(train, scale, sched.lr_patch, sched.batch, seed=t.seed * 1000) for t in trials]
    fused = FusedTrainStep(models, [t.config.prior for t in trials], scale, lr=cfg.optim.learning_rate,
                           weight_decay=cfg.optim.weight_decay, generators=None if ctx.cuda_graph else generators,
                           bf16=cfg.model.bf16, cuda_graph=ctx.cuda_graph, l1_reduction=cfg.optim.l1_reduction)
    k = len(trials)
    step, run_ids, val_psnr, steps_s = 0, [None] * k, [math.nan] * k, 0.0
    best = [Best() for _ in trials]
    state = session.load()
    _check(trials, state)
    if state is not None:
        _set_rng_state(state["rng"], generators[0])
        for i, m in enumerate(state["members"]):
            fused.load_member_state(i, m["model"], m["optimizer"])
            samplers[i].load_state_dict(m["sampler"])
            generators[i].set_state(m["generator"])
        step, steps_s = state["step"], state["steps_s"]
        run_ids, val_psnr = [m["run_id"] for m in state["members"]], [m["val_psnr"] for m in state["members"]]
        best = [Best(m["best"]) for m in state["members"]]
    starts = [m.get("loss_start") for m in state["members"]] if state is not None else [None] * k
    first = Behaviour(ctxs[0], cfg, val, starts[0])  # divergence without NaN, per member (srprior.trainers.health)
    behaviours = [first] + [Behaviour(c, t.config, None, s, first.bicubic) for t, c, s in
                            zip(trials[1:], ctxs[1:], starts[1:])]
    loggers = [RunLogger(t, c, run_ids[i] or c.resume_run_id, step, roles, session.fallback)
               if c.tracking_uri else None for i, (t, c) in enumerate(zip(trials, ctxs))]
    failed: dict[int, tuple[int, str]] = {}

    def fail(i: int, found: tuple[int, str] | None) -> None:
        if found is not None and i not in failed:
            failed[i] = found
            if loggers[i]:
                loggers[i].fail(*found)

    def fail_new() -> None:
        for i, found in fused.failures().items():
            fail(i, found)

    first_step_at = last_step_at = None
    while step < sched.steps:
        step += 1
        _maybe_fault(ctx, step, 0)
        batches = [s.next() for s in samplers]
        fused.lr = cfg.optim.rate(step)
        lr = torch.stack([b[0] for b in batches]).to(device, non_blocking=True)
        hr = torch.stack([b[1] for b in batches]).to(device, non_blocking=True)
        t0 = time.time()
        first_step_at = first_step_at or t0
        out = fused(lr, hr)
        if step == 1 or step % ctx.log_every == 0:
            fail_new()
            l1, l_ap, total = (v.tolist() for v in (out.l1, out.l_ap, out.total))
            for i, logger in enumerate(loggers):
                if i not in failed:
                    fail(i, behaviours[i].loss(step, total[i]))
                if logger and i not in failed and step % ctx.log_every == 0:
                    logger.add(step, {"train/l1": l1[i], "train/l_ap": l_ap[i], "train/loss": total[i]})
        last_step_at = time.time()
        steps_s += last_step_at - t0
        is_ckpt = step % ctx.ckpt_every == 0 or step == sched.steps
        if not (is_ckpt or step % sched.val_every == 0):
            continue
        fail_new()
        for i in range(k):
            if i not in failed:
                member = fused.member_model(i)
                val_psnr[i] = evaluate(member, val, scale, device, shave=shave(cfg))["psnr"]
                best[i].update(step, val_psnr[i], member.state_dict)
                if loggers[i]:
                    loggers[i].add(step, {contracts.OBJECTIVE: val_psnr[i]})
                fail(i, behaviours[i].psnr(step, val_psnr[i]))
        alive = [v for i, v in enumerate(val_psnr) if i not in failed]
        metrics = {"step": step, contracts.OBJECTIVE: sum(alive) / len(alive) if alive else math.nan,
                   "members_failed": len(failed)}
        saved = None
        if is_ckpt:
            for logger in loggers:
                if logger:
                    logger.flush()
            members = []
            for i, t in enumerate(trials):
                model_sd, optim_sd = fused.member_state(i)
                members.append({"trial": t.to_dict(), "model": model_sd, "optimizer": optim_sd,
                                "sampler": samplers[i].state_dict(), "generator": generators[i].get_state(),
                                "run_id": loggers[i] and loggers[i].run_id, "val_psnr": val_psnr[i],
                                "best": best[i].state(), "loss_start": behaviours[i].start})
            saved = {"members": members, "step": step, "steps_s": steps_s, "rng": _rng_state(generators[0])}
        session.report(metrics, saved)

    finals: list[dict[str, float]] = []
    for i, (t, c) in enumerate(zip(trials, ctxs)):
        if i in failed:
            finals.append({})
            continue
        with _figure_dir(c.figures) as figures:
            metrics, tags, files = selected_metrics(fused.member_model(i), best[i], t.config, device, figures, step)
            timing = {"system/train_steps_s": steps_s, "system/fused_members": float(k)}
            if c.trial_started_at:
                timing["system/trial_wall_s"] = time.time() - c.trial_started_at
                if first_step_at:
                    timing["system/to_first_step_s"] = first_step_at - c.trial_started_at
            if loggers[i]:
                loggers[i].finish(step, {**metrics, **timing}, tags, files)
            finals.append({**metrics, **timing})
    summary: dict[str, Any] = {"step": step, "members_failed": len(failed)}
    alive = [v for i, v in enumerate(val_psnr) if i not in failed]
    summary[contracts.OBJECTIVE] = sum(alive) / len(alive) if alive else math.nan  # Tune requires it
    if first_step_at:
        summary.update({"system/first_step_unix": first_step_at, "system/last_step_unix": last_step_at})
    session.report(summary, None)
    return finals
