"""How a sweep maps trials onto CPUs and GPUs: per-worker shares and the number of trials at once.

A trial is one Tune driver ({"CPU": DRIVER_CPU}: a whole CPU per driver deadlocks a 2-core box, where 2 drivers
would hold every CPU and no Train worker could start) plus `workers` Train workers. CPU boxes: one trial per
core, workers get the rest as fractional CPUs (0.9 each on 2 cores), gloo. GPU boxes: a fractional GPU per trial
chosen from the model's parameter count (DEFAULT_GPU_SHARE), so several tiny models share a GPU, and
max_concurrent = GPUs // gpus-per-trial (an explicit max_concurrent wins: on an autoscaling cluster the extra
trials' demand is what adds GPU nodes). Several workers per trial (DDP) need whole GPUs each: two NCCL ranks
cannot share one device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from srprior.errors import UserError

DRIVER_CPU = 0.1
# (parameters below, GPU share per trial): micro models 1/8 of a GPU, EDSR-T/RNAN-T 1/4, RCAN-T 1/2, -B whole.
DEFAULT_GPU_SHARE = ((0.5e6, 0.125), (2.5e6, 0.25), (8e6, 0.5), (math.inf, 1.0))


class ResourceError(UserError, ValueError):
    """Resources asked for that the machine or cluster cannot give (workers, GPU shares, concurrency); raised
    before Ray starts."""


@dataclass(frozen=True)
class Resources:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_concurrent: int


def gpu_share(preset: str, scale: int) -> float:
    """Default GPUs per trial from the model's parameter count (built on the meta device: no memory)."""
    import torch

    from srprior.archs import build_model

    with torch.device("meta"):
        n = sum(p.numel() for p in build_model(preset, scale).parameters())
    return next(share for limit, share in DEFAULT_GPU_SHARE if n < limit)


def plan_resources(n_trials: int, models: set[tuple[str, int]], cpus: float, gpus: float, workers: int = 1,
                   gpus_per_trial: float | None = None, max_concurrent: int | None = None) -> Resources:
    """Per-worker CPU/GPU and the concurrency for `n_trials` trials of `models` ((preset, scale) pairs)."""
    if workers < 1:
        raise ResourceError(f"--workers {workers}: must be >= 1")
    if gpus_per_trial is None:
        gpus_per_trial = max(gpu_share(*m) for m in models) if gpus > 0 else 0.0
    if gpus_per_trial < 0:
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial}: must be >= 0")
    if gpus_per_trial > 0 and gpus == 0:
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial}: this machine/cluster has no GPU; "
                         "use --gpus-per-trial 0 (CPU, gloo) or run on a GPU host")
    if gpus_per_trial > gpus:
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial} exceeds the {gpus:g} GPU(s) available")
    per_worker = gpus_per_trial / workers
    if workers > 1 and gpus_per_trial > 0 and (per_worker < 1 or per_worker != int(per_worker)):
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial} with {workers} workers: DDP needs one whole GPU "
                         "per worker; use fractional GPUs only with --workers 1")
    fit = math.floor(gpus / gpus_per_trial + 1e-9) if gpus_per_trial else math.floor(cpus / workers)
    concurrent = max(1, min(n_trials, max_concurrent or fit))  # more than fits: trials queue (or autoscale)
    cpus_per_worker = math.floor((cpus - DRIVER_CPU * concurrent) / (concurrent * workers) * 100) / 100
    if cpus_per_worker < 0.05:
        raise ResourceError(f"{cpus:g} CPUs cannot hold {concurrent} trials × {workers} workers; "
                         "lower --max-concurrent or --workers")
    return Resources(workers, cpus_per_worker, per_worker, concurrent)
