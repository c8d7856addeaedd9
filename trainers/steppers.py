"""The two ways one Train worker steps its trials, behind the one loop (srprior.trainers.loop).

`Single`: one trial on every rank of its Train run, srprior.method.step.TrainStep, DDP through `session.prepare`
when the trial has several workers, a patch stream per rank. `Fused`: K members (seeds of a row, or rows
differing only in λ_AP / w) as one srprior.method.fused.FusedTrainStep in one worker — one start-up, one GPU
share; groups are single-worker (no DDP): fusion is for models too small to fill one device.

Each member gets what a separate trial of its seed gets: its initial weights (`torch.manual_seed(seed)` right
before the model is built), its data stream and generator (`stream_seed(seed, rank)`). A stepper exposes what
differs between the two: drawing a batch, the step, a member's model, which members failed (Single: non-finite
loss or parameters, agreed across ranks; Fused: the members the fused step froze), and the checkpoint layout
(srprior.trainers.checkpoints: a single trial's keys at the top level, a group's under "members").
"""

from __future__ import annotations

from typing import Any

import torch

from srprior.schema import RunContext, Trial
from srprior.trainers.health import Divergence
from srprior.trainers.rng import rng_state, set_rng_state, stream_seed

Found = dict[int, tuple[int, str]]  # member -> (step, reason)


def _model(trial: Trial) -> torch.nn.Module:
    """The initial weights a trial of this seed gets, wherever it trains (alone, DDP rank, fused member)."""
    from srprior.archs import build_model

    torch.manual_seed(trial.seed)
    return build_model(trial.config.model.preset, trial.config.model.scale)


def _sampler(train: list, trial: Trial, seed: int) -> Any:
    from srprior.data.datasets import PatchSampler

    sched = trial.config.schedule
    return PatchSampler(train, trial.config.model.scale, sched.lr_patch, sched.batch, seed=seed)


class Single:
    """One trial on this rank (see the module docstring)."""

    def __init__(self, trials: list[Trial], ctx: RunContext, session: Any, train: list):
        from srprior.method.step import TrainStep, make_optimizer

        (trial,) = trials
        cfg, self.session, self.device = trial.config, session, session.device
        model = session.prepare(_model(trial))  # identical initial weights on every rank; DDP when world > 1
        self.net = getattr(model, "module", model)
        self.optimizer = make_optimizer(model, cfg.optim.learning_rate, cfg.optim.weight_decay)
        seed = stream_seed(trial.seed, session.rank)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.train_step = TrainStep(model, self.optimizer, cfg.prior, cfg.model.scale, bf16=cfg.model.bf16,
                                    cuda_graph=ctx.cuda_graph, generator=None if ctx.cuda_graph else self.generator,
                                    l1_reduction=cfg.optim.l1_reduction)
        self.sampler = _sampler(train, trial, seed)
        self.divergence = Divergence(self.device)

    def set_learning_rate(self, learning_rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.sampler.next()
        return lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)

    def step(self, step: int, lr: torch.Tensor, hr: torch.Tensor) -> Any:
        out = self.train_step(lr, hr)
        self.divergence.track(step, out.total)  # on the device: no host sync per step
        return out

    def model(self, member: int) -> torch.nn.Module:
        return self.net

    def check(self, step: int, found: Found, parameters: bool) -> Found:
        """Member 0's failure as every rank agrees on it (a non-finite loss since the last check first, then
        non-finite parameters when asked, then `found`); syncs the host and the ranks."""
        failure = self.divergence.check(self.session, step, self.net if parameters else None, found.get(0))
        return {0: failure} if failure else {}

    def checkpoint(self, members: list[dict], top: dict) -> dict | None:
        """Every rank's sampler and RNG state (a collective), the state itself on rank 0 (None elsewhere)."""
        states = self.session.gather((self.sampler.state_dict(), rng_state(self.generator)))
        if self.session.rank != 0:
            return None
        return {**members[0], "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": [s for s, _ in states], "rng": [r for _, r in states], **top}

    def load(self, state: dict) -> None:
        rank, world = self.session.rank, self.session.world
        if len(state["sampler"]) != world:
            raise ValueError(f"checkpoint was written by {len(state['sampler'])} workers, this trial has {world}; "
                             "resume with the same number of workers")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"][rank])
        set_rng_state(state["rng"][rank], self.generator)


class Fused:
    """K members as one fused step in one worker (see the module docstring)."""

    def __init__(self, trials: list[Trial], ctx: RunContext, session: Any, train: list):
        from srprior.method.fused import FusedTrainStep

        if session.world != 1:
            raise ValueError("fused groups train in one worker (no DDP); use --fuse 1 with --workers N")
        cfg, self.device = trials[0].config, session.device
        models = [_model(t).to(self.device) for t in trials]
        seeds = [stream_seed(t.seed, session.rank) for t in trials]
        self.generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        self.samplers = [_sampler(train, t, s) for t, s in zip(trials, seeds)]
        self.fused = FusedTrainStep(models, [t.config.prior for t in trials], cfg.model.scale,
                                    learning_rate=cfg.optim.learning_rate, weight_decay=cfg.optim.weight_decay,
                                    generators=None if ctx.cuda_graph else self.generators, bf16=cfg.model.bf16,
                                    cuda_graph=ctx.cuda_graph, l1_reduction=cfg.optim.l1_reduction)

    def set_learning_rate(self, learning_rate: float) -> None:
        self.fused.learning_rate = learning_rate

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [s.next() for s in self.samplers]
        lr = torch.stack([b[0] for b in batches]).to(self.device, non_blocking=True)
        hr = torch.stack([b[1] for b in batches]).to(self.device, non_blocking=True)
        return lr, hr

    def step(self, step: int, lr: torch.Tensor, hr: torch.Tensor) -> Any:
        return self.fused(lr, hr)

    def model(self, member: int) -> torch.nn.Module:
        """A copy of member `member`'s current weights."""
        return self.fused.member_model(member)

    def check(self, step: int, found: Found, parameters: bool) -> Found:
        """`found`, overridden by the members the fused step froze (non-finite loss, gradient or state: it
        checks parameters every step); syncs the host."""
        return {**found, **self.fused.failures()}

    def checkpoint(self, members: list[dict], top: dict) -> dict:
        out = []
        for i, member in enumerate(members):
            model_sd, optim_sd = self.fused.member_state(i)
            out.append({**member, "model": model_sd, "optimizer": optim_sd, "sampler": self.samplers[i].state_dict(),
                        "generator": self.generators[i].get_state()})
        return {"members": out, **top, "rng": rng_state(self.generators[0])}

    def load(self, state: dict) -> None:
        set_rng_state(state["rng"], self.generators[0])
        for i, member in enumerate(state["members"]):
            self.fused.load_member_state(i, member["model"], member["optimizer"])
            self.samplers[i].load_state_dict(member["sampler"])
            self.generators[i].set_state(member["generator"])
