"""One training step, L = L1 + lambda_AP * L_AP (thesis Eq. 3.9-3.10), Adam as in §4.1.

The prior step shares the L1 forward pass: forward (input as a grad leaf) -> input gradient of the PoI sum with
``create_graph`` -> one backward of L1 + lambda*L_AP (the double backward) into the parameters only -> Adam.
With ``lambda_ap == 0`` it is exactly the plain L1 step (no extractor, no leaf, no extra backward).

``l1_reduction`` reads Eq. 3.10's L1 term: "mean" averages |SR - HR| over all B*C*H*W elements (EDSR/RCAN code,
``F.l1_loss``); "sum" is Eq. 3.10 literally, (1/N) sum_j ||f(x_j) - y_j||_1, the per-image l1 norm averaged over
the batch. "sum" is C*H*W times "mean" (27,648 for 48x48 LR crops at x2), so at the same lambda_AP the prior
weighs C*H*W times less against L1: lambda_AP = 1e-4 under "sum" is lambda_AP = 3.6e-9 under "mean". Adam
normalises the overall gradient scale, so without the prior both readings train almost alike (only Adam's eps
differs).

Speed options (meant for GPUs): ``bf16`` autocasts the model forward (its backward and double backward follow
the forward's dtypes; losses, PoI sum and norms stay fp32; works on CPU too, slowly). ``cuda_graph`` captures the
whole step (extractor, forward, double backward, Adam with ``capturable=True``) once per input shape and then
replays it from static input buffers; it is ignored for CPU tensors. Capture needs three eager warm-up steps; the
parameters and optimizer state are restored afterwards, so the training trajectory is the same as eager. The
learning rate is baked into the graph (the thesis keeps it fixed). `StepGraph` is that recipe, shared with
srprior.method.fused.FusedTrainStep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srprior.method.prior import PriorConfig, attribution, prior_loss
from srprior.method.ssm import extract

L1_REDUCTIONS = ("mean", "sum")


@dataclass
class StepOutput:
    """Detached scalar tensors (call ``.item()`` only when logging: it syncs the device)."""

    l1: torch.Tensor
    l_ap: torch.Tensor
    total: torch.Tensor
    n_valid: torch.Tensor


def make_optimizer(model: nn.Module, learning_rate: float = 1e-4, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam(beta=(0.9, 0.999), eps=1e-8) as in thesis §4.1; ``weight_decay`` is the Table 4.6 ablation."""
    if not learning_rate > 0 or not weight_decay >= 0:
        raise ValueError(f"make_optimizer(learning_rate={learning_rate!r}, weight_decay={weight_decay!r}): need "
                         "learning_rate > 0, weight_decay >= 0")
    return torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=weight_decay)


class StepGraph:
    """A training step as one CUDA graph per input shape, replayed from static input buffers.

    The recipe TrainStep and FusedTrainStep share: ``snapshot()`` the training state, three eager warm-up steps
    on a side stream (allocator, cuDNN algorithm choice, lazy optimizer state outside the capture),
    ``before_capture()``, capture one ``eager`` step, then ``restore(snapshot)`` in place (the graph holds these
    very tensors), so the trajectory equals eager. Outputs are cloned: the next replay overwrites them."""

    def __init__(self, eager: Callable[[torch.Tensor, torch.Tensor], StepOutput], snapshot: Callable[[], Any],
                 restore: Callable[[Any], None], before_capture: Callable[[], None] = lambda: None):
        self.eager, self.snapshot, self.restore, self.before_capture = eager, snapshot, restore, before_capture
        self._graph: tuple | None = None  # (key, graph, static_lr, static_hr, static_out)

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
        key = (tuple(lr.shape), tuple(hr.shape), lr.dtype, lr.device)
        if self._graph is None or self._graph[0] != key:
            self._graph = None  # a failed capture never leaves a stale graph behind
            self._graph = (key, *self._capture(lr, hr))
        _, graph, static_lr, static_hr, static_out = self._graph
        static_lr.copy_(lr)
        static_hr.copy_(hr)
        graph.replay()
        return StepOutput(*(t.clone() for t in static_out))

    def _capture(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple:
        saved = self.snapshot()
        static_lr, static_hr = lr.clone(), hr.clone()
        side = torch.cuda.Stream(device=lr.device)
        side.wait_stream(torch.cuda.current_stream(lr.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.eager(static_lr, static_hr)
        torch.cuda.current_stream(lr.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.before_capture()
        with torch.cuda.graph(graph):
            out = self.eager(static_lr, static_hr)
        self.restore(saved)
        return graph, static_lr, static_hr, (out.l1, out.l_ap, out.total, out.n_valid)


class TrainStep:
    """``step(lr, hr) -> StepOutput``: one optimizer step on a batch (LR ``(B,3,h,w)``, HR ``(B,3,h*s,w*s)``)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        prior: PriorConfig,
        scale: int,
        *,
        bf16: bool = False,
        cuda_graph: bool = False,
        generator: torch.Generator | None = None,
        l1_reduction: str = "mean",
    ):
        if not isinstance(prior, PriorConfig):
            raise TypeError(f"TrainStep(prior=...): expected a PriorConfig, got {type(prior).__name__}")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"TrainStep(scale={scale!r}): must be a positive int")
        if l1_reduction not in L1_REDUCTIONS:
            raise ValueError(f"TrainStep(l1_reduction={l1_reduction!r}): use one of {', '.join(L1_REDUCTIONS)}")
        if cuda_graph and generator is not None:
            raise ValueError("TrainStep(cuda_graph=True) replays the default CUDA generator; pass generator=None")
        self.model, self.optimizer, self.prior, self.scale = model, optimizer, prior, scale
        self.bf16, self.cuda_graph, self.generator, self.l1_reduction = bf16, cuda_graph, generator, l1_reduction
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._graph = StepGraph(self._eager, self._capturable_snapshot,
                                lambda saved: _restore(model, optimizer, saved),
                                before_capture=lambda: optimizer.zero_grad(set_to_none=True))

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
        if self.cuda_graph and lr.is_cuda:
            return self._graph(lr, hr)
        return self._eager(lr, hr)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model forward, under bf16 autocast if asked; losses and input gradients run outside autocast
        (the AMP recipe for gradient penalties) and in fp32."""
        if not self.bf16:
            return self.model(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()

    def _l1(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.l1_reduction == "mean":
            return F.l1_loss(sr, hr)
        return F.l1_loss(sr, hr, reduction="sum") / sr.shape[0]

    def _eager(self, lr: torch.Tensor, hr: torch.Tensor) -> StepOutput:
        self.optimizer.zero_grad(set_to_none=True)
        if self.prior.lambda_ap == 0.0:
            l1 = self._l1(self._forward(lr), hr)
            l1.backward()
            self.optimizer.step()
            zero = l1.detach().new_zeros(())
            return StepOutput(l1.detach(), zero, l1.detach(), zero)
        extraction = extract(lr, self.prior.extractor, self.generator)
        x = lr.detach().requires_grad_(True)
        sr = self._forward(x)
        l1 = self._l1(sr, hr)
        attr = attribution(sr, x, extraction, self.scale, create_graph=True)
        l_ap, info = prior_loss(attr, extraction, self.prior)
        total = l1 + self.prior.lambda_ap * l_ap
        torch.autograd.backward(total, inputs=self._params)  # not into the input leaf
        self.optimizer.step()
        return StepOutput(l1.detach(), l_ap.detach(), total.detach(), info["n_valid"])

    def _capturable_snapshot(self) -> tuple[list, dict]:
        """Adam with ``capturable=True`` (its step count on the device), then the state the capture restores."""
        for group in self.optimizer.param_groups:
            if "capturable" in group:
                group["capturable"] = True
        for p, st in self.optimizer.state.items():
            if torch.is_tensor(st.get("step")):
                st["step"] = st["step"].to(p.device)
        return _snapshot(self.model, self.optimizer)


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[list, dict]:
    params = [p.detach().clone() for p in model.parameters()]
    state = {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for p, s in optimizer.state.items()}
    return params, state


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: tuple[list, dict]) -> None:
    """Undo the warm-up steps in place (the graph holds these very tensors)."""
    params, state = saved
    with torch.no_grad():
        for p, old in zip(model.parameters(), params):
            p.copy_(old)
        for p, s in optimizer.state.items():
            old = state.get(id(p), {})
            for k, v in s.items():
                if not torch.is_tensor(v):
                    continue
                if k in old:
                    v.copy_(old[k])
                else:
                    v.zero_()
