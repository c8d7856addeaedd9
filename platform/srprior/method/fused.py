"""K trials of one architecture trained as one horizontally fused network (issue 12; HFTA, MLSys 2021).

Small SR models leave a GPU mostly idle; K seeds or λ_AP/w settings of the same preset, scale, patch and batch
then run as one step: ``vmap(functional_call)`` over the stacked member parameters turns every convolution into
one grouped convolution (K groups), every matmul into one batched matmul. Members stay independent: disjoint
parameters, own data batch ``(K, B, 3, h, w)``, own Adam state and step count, own generator for the random
scenarios, own λ_AP and w (the extractor config is shared). Since inputs and parameters of different members
never mix, one ``autograd.grad`` of the summed PoI outputs w.r.t. the stacked input is every member's attribution
(Eq. 3.2), and one backward of the summed member losses is every member's parameter gradient.

Parameters live in one flat ``(K, P)`` leaf (member-major), so Adam, the finite checks and the freezing of a
failed member are a handful of whole-tensor ops with per-member ``(K, 1)`` bias corrections. Adam follows
``torch.optim.Adam``'s arithmetic op for op (weights agree with K separate ``TrainStep`` runs to rounding).
A member whose loss, gradient, updated parameters or Adam state is non-finite is frozen by ``torch.where``
(never updated again, the others untouched) and reported by ``failures()``. ``step`` never syncs the host.

``cuda_graph=True`` (CUDA tensors only) captures the whole fused step once per input shape and replays it with
TrainStep's recipe (srprior.method.step.StepGraph): three eager warm-up steps on a side stream, then every state
tensor (parameters, moments, step counts, alive/failure flags) is restored in place, so the trajectory equals
eager. It removes vmap's per-op Python dispatch, which grows with the number of ops, not with K. Random scenarios
then use the default CUDA generator (per-member generators cannot be replayed); the learning rate is baked into
the graph, as in TrainStep. Not supported: BatchNorm in train mode (``edsr-t-bn``: running statistics are updated
in place).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import fields

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from srprior.method.prior import PriorConfig, attribution, prior_loss
from srprior.method.ssm import Extraction, extract
from srprior.method.step import L1_REDUCTIONS, StepGraph, StepOutput, make_optimizer

_SIM = PriorConfig(w="sim")  # prior_loss reads per-sample targets from Extraction.sim (constant w filled in)
REASONS = {1: "non-finite loss", 2: "non-finite gradient", 3: "non-finite parameters or Adam state"}


class FusedTrainStep:
    """``step(lr, hr) -> StepOutput`` of ``(K,)`` tensors: one Adam step of each of K members.

    ``models``: K modules of one architecture (copied: read weights back with ``member_model``/``member_state``);
    ``priors``: K PriorConfigs sharing the extractor; Adam as ``make_optimizer(model, learning_rate, weight_decay)``;
    ``generators``: K generators (or None) for the random scenarios. Batches: LR ``(K, B, 3, h, w)``, HR
    ``(K, B, 3, h*s, w*s)``."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        priors: Sequence[PriorConfig],
        scale: int,
        *,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.0,
        generators: Sequence[torch.Generator | None] | None = None,
        bf16: bool = False,
        cuda_graph: bool = False,
        l1_reduction: str = "mean",
    ):
        k = len(models)
        if k < 1 or len(priors) != k or (generators is not None and len(generators) != k):
            raise ValueError(f"FusedTrainStep: need K >= 1 models and as many priors (and generators), got "
                             f"{k} models, {len(priors)} priors")
        if not all(isinstance(p, PriorConfig) for p in priors) or len({p.extractor for p in priors}) != 1:
            raise ValueError("FusedTrainStep(priors=...): K PriorConfigs with one shared extractor config")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
            raise ValueError("FusedTrainStep: BatchNorm (edsr-t-bn) updates running statistics in place; "
                             "train it with TrainStep")
        if cuda_graph and any(g is not None for g in generators or []):
            raise ValueError("FusedTrainStep(cuda_graph=True) replays the default CUDA generator; pass generators=None")
        make_optimizer(models[0], learning_rate, weight_decay)  # the same argument checks as the unfused trial
        if l1_reduction not in L1_REDUCTIONS:
            raise ValueError(f"FusedTrainStep(l1_reduction={l1_reduction!r}): use one of {', '.join(L1_REDUCTIONS)}")
        self.l1_reduction = l1_reduction
        self.k, self.scale, self.bf16, self.weight_decay = k, scale, bf16, weight_decay
        self.learning_rate = learning_rate  # read by every eager step (a schedule sets it; a CUDA graph bakes it)
        self.cuda_graph = cuda_graph
        self._graph = StepGraph(self._eager, lambda: [t.detach().clone() for t in self._state()], self._restore)
        self.priors, self.generators = list(priors), list(generators or [None] * k)
        self.extractor = priors[0].extractor
        params, self._buffers = stack_module_state(list(models))
        self._names = list(params)
        self._shapes = [p.shape[1:] for p in params.values()]
        self._numels = [s.numel() for s in self._shapes]
        self._base = copy.deepcopy(models[0]).to("meta")  # structure only; functional_call supplies tensors
        self.flat = torch.cat([p.detach().flatten(1) for p in params.values()], 1).requires_grad_(True)
        dev, dt = self.flat.device, self.flat.dtype
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(self.flat), torch.zeros_like(self.flat)
        self.steps = torch.zeros(k, dtype=torch.float64, device=dev)  # Adam step count per member
        self.alive = torch.ones(k, dtype=torch.bool, device=dev)
        self._fail_step = torch.zeros(k, dtype=torch.long, device=dev)
        self._fail_reason = torch.zeros(k, dtype=torch.long, device=dev)
        self._lambda = torch.tensor([p.lambda_ap for p in priors], dtype=dt, device=dev)
        self._w_sim = torch.tensor([p.w == "sim" for p in priors], device=dev)
        self._w = torch.tensor([0.0 if p.w == "sim" else p.w for p in priors], dtype=torch.float64, device=dev)
        self._prior = any(p.lambda_ap > 0 for p in priors)  # all-plain groups skip extractor and leaf
        self._random = self.extractor.scenario.startswith("random")

    # ------------------------------------------------------------------------------------------- step
    def __call__(self, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
        if lr.dim() != 5 or lr.shape[0] != self.k or hr.shape[:2] != lr.shape[:2]:
            raise ValueError(f"FusedTrainStep: expected LR (K={self.k}, B, 3, h, w) and HR (K, B, 3, H, W), "
                             f"got {tuple(lr.shape)} and {tuple(hr.shape)}")
        if self.cuda_graph and lr.is_cuda:
            return self._graph(lr, hr)
        return self._eager(lr, hr)

    def _eager(self, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
        if not self._prior:
            sr = self._forward(lr)
            l1 = self._l1(sr, hr)
            l_ap = n_valid = torch.zeros_like(l1)
            total = l1
        else:
            ext = self._extract(lr)
            x = lr.detach().requires_grad_(True)
            sr = self._forward(x)
            l1 = self._l1(sr, hr)
            attr = attribution(sr.flatten(0, 1), x, ext, self.scale, create_graph=True)
            l_ap, n_valid = self._prior_loss(attr, ext, lr.shape[:2])
            prior = self._lambda > 0  # plain members of a mixed group report 0, as TrainStep does
            l_ap, n_valid = torch.where(prior, l_ap, 0.0), torch.where(prior, n_valid, 0.0)
            total = l1 + self._lambda * l_ap
        torch.autograd.backward(total.sum(), inputs=[self.flat])
        self._adam(total.detach())
        return StepOutput(l1.detach(), l_ap.detach(), total.detach(), n_valid.to(l1.dtype))

    def _l1(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """(K,) L1 of Eq. 3.10 per member, reduced as TrainStep does ("mean" or per-image "sum")."""
        err = (sr - hr).abs()
        return err.flatten(1).mean(1) if self.l1_reduction == "mean" else err.flatten(2).sum(2).mean(1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """All members' SR outputs ``(K, B, 3, H, W)``; bf16 autocast as in TrainStep (losses stay fp32)."""
        params = {n: t.view(self.k, *s) for n, t, s in zip(self._names, self.flat.split(self._numels, 1),
                                                            self._shapes)}
        run = vmap(lambda p, b, xk: functional_call(self._base, (p, b), (xk,)))
        if not self.bf16:
            return run(params, self._buffers, x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return run(params, self._buffers, x).float()

    def _extract(self, lr: torch.Tensor) -> Extraction:
        """Extraction of the flattened K*B batch; random scenarios draw per member from its own generator."""
        flat = lr.detach().flatten(0, 1)
        if not self._random:
            return extract(flat, self.extractor)
        parts = [extract(lr[i].detach(), self.extractor, g) for i, g in enumerate(self.generators)]
        return Extraction(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Extraction)))

    def _prior_loss(self, attr: torch.Tensor, ext: Extraction, kb: torch.Size) -> tuple[torch.Tensor, ...]:
        """Per-member L_AP and n_valid: ``prior_loss`` vmapped over members, constant w written into the targets."""
        def one(a, poi, ssr, sim, valid):
            l_ap, info = prior_loss(a, Extraction(None, None, poi, ssr, sim, valid, None, None), _SIM)
            return l_ap, info["n_valid"]

        dt = attr.dtype  # the input's: fp32 also under bf16 autocast, fp64 in exactness tests
        sim = ext.sim.to(dt).unflatten(0, kb)
        targets = torch.where(self._w_sim.view(-1, 1, 1), sim, self._w.to(dt).view(-1, 1, 1))
        return vmap(one)(attr, *(t.unflatten(0, kb) for t in (ext.poi_mask, ext.ssr_masks)), targets,
                         ext.valid.unflatten(0, kb))

    @torch.no_grad()
    def _adam(self, total: torch.Tensor) -> None:
        """torch.optim.Adam's update (single-tensor path, op for op) with per-member step counts; members whose
        loss, gradient, new parameters or second moment are non-finite keep their old state and are frozen."""
        p, g, dt = self.flat, self.flat.grad, self.flat.dtype
        self.flat.grad = None
        b1, b2, eps = 0.9, 0.999, 1e-8
        if self.weight_decay:
            g = g.add(p, alpha=self.weight_decay)
        m = self.exp_avg.lerp(g, 1 - b1)
        v = self.exp_avg_sq.mul(b2).addcmul_(g, g, value=1 - b2)
        steps = self.steps + 1
        step_size = (self.learning_rate / (1 - b1**steps)).to(dt).view(-1, 1)
        bc2_sqrt = (1 - b2**steps).sqrt().to(dt).view(-1, 1)
        new_p = p + (-step_size) * m / (v.sqrt() / bc2_sqrt).add_(eps)
        # a row sum is non-finite iff an element is, or when it overflows: only for a member that diverged anyway
        loss_ok, grad_ok = total.isfinite(), g.sum(1).isfinite()
        ok = self.alive & loss_ok & grad_ok & (new_p.sum(1) + v.sum(1)).isfinite()
        keep = ok.view(-1, 1)
        p.copy_(torch.where(keep, new_p, p))
        self.exp_avg.copy_(torch.where(keep, m, self.exp_avg))
        self.exp_avg_sq.copy_(torch.where(keep, v, self.exp_avg_sq))
        failed = self.alive & ~ok
        reason = torch.where(~loss_ok, 1, torch.where(~grad_ok, 2, 3))
        self._fail_step.copy_(torch.where(failed, steps.long(), self._fail_step))
        self._fail_reason.copy_(torch.where(failed, reason, self._fail_reason))
        self.steps.copy_(torch.where(ok, steps, self.steps))
        self.alive &= ok

    def _state(self) -> list[torch.Tensor]:
        return [self.flat, self.exp_avg, self.exp_avg_sq, self.steps, self.alive, self._fail_step, self._fail_reason]

    @torch.no_grad()
    def _restore(self, saved: list[torch.Tensor]) -> None:
        """Undo warm-up and capture steps in place (the graph holds these very tensors)."""
        for t, old in zip(self._state(), saved):
            t.copy_(old)

    # ---------------------------------------------------------------------------------- members
    def failures(self) -> dict[int, tuple[int, str]]:
        """{member: (its training step that failed, reason)} for frozen members (syncs the host)."""
        alive, step, reason = (t.tolist() for t in (self.alive, self._fail_step, self._fail_reason))
        return {k: (step[k], REASONS[reason[k]]) for k in range(self.k) if not alive[k]}

    def _member_tensors(self, k: int) -> dict[str, torch.Tensor]:
        out = dict(zip(self._names, self._rows(self.flat.detach(), k)))
        out.update({n: b[k] for n, b in self._buffers.items()})
        return out

    def member_model(self, k: int) -> nn.Module:
        """A plain ``nn.Module`` holding a copy of member k's current weights (evaluation, export)."""
        model = copy.deepcopy(self._base).to_empty(device=self.flat.device)
        tensors = self._member_tensors(k)
        with torch.no_grad():
            for name, t in (*model.named_parameters(), *model.named_buffers()):
                t.copy_(tensors[name])
        return model

    def member_state(self, k: int) -> tuple[dict, dict]:
        """(model state_dict, Adam state_dict) of member k, exactly as an unfused ``TrainStep``'s model and
        ``make_optimizer`` would save them: resumable fused or unfused."""
        model = self.member_model(k)
        opt = make_optimizer(model, self.learning_rate, self.weight_decay)
        step = float(self.steps[k])
        if step > 0:
            scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # as Adam
            for p, m, v in zip(model.parameters(), self._rows(self.exp_avg, k), self._rows(self.exp_avg_sq, k)):
                opt.state[p] = {"step": torch.tensor(step, dtype=scalar), "exp_avg": m.clone(),
                                "exp_avg_sq": v.clone()}
        return model.state_dict(), opt.state_dict()

    def load_member_state(self, k: int, model_state: dict, optim_state: dict) -> None:
        """Replace member k by a saved (model, Adam) state (from ``member_state`` or an unfused trial); the
        member is alive again. Adam hyperparameters must match the group's."""
        model = copy.deepcopy(self._base).to_empty(device=self.flat.device)
        model.load_state_dict(model_state)
        opt = make_optimizer(model, self.learning_rate, self.weight_decay)
        opt.load_state_dict(optim_state)
        group = opt.param_groups[0]
        want = {"lr": self.learning_rate, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": self.weight_decay,
                "amsgrad": False, "maximize": False}
        got = {key: tuple(group[key]) if key == "betas" else group[key] for key in want}
        if got != want:
            raise ValueError(f"load_member_state: optimizer settings {got} differ from the group's {want}")
        params = list(model.parameters())
        states = [opt.state.get(p, {}) for p in params]
        steps = {float(s["step"]) if s else 0.0 for s in states}
        if len(steps) != 1:
            raise ValueError(f"load_member_state: parameters have different Adam step counts {sorted(steps)}")
        with torch.no_grad():
            for dst, key in ((self.flat, None), (self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
                dst[k] = torch.cat([(p if key is None else s.get(key, torch.zeros_like(p))).detach().flatten()
                                    for p, s in zip(params, states)]).to(dst.dtype)
            for name, b in model.named_buffers():
                if name in model_state:  # non-persistent buffers (the bicubic skip's taps) stay the group's
                    self._buffers[name][k] = b
        self.steps[k] = steps.pop()
        self.alive[k] = True

    def _rows(self, flat: torch.Tensor, k: int) -> list[torch.Tensor]:
        return [t.view(s) for t, s in zip(flat[k].split(self._numels), self._shapes)]
