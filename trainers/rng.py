"""Randomness of a training run: the per-rank stream seed, and the RNG state a checkpoint carries.

`stream_seed(seed, rank)` is the one rule for a rank's (or a fused member's) patch sampler and prior generator:
every rank of a DDP trial draws its own patches and random SSRs, and a fused member draws exactly what the same
seed trained alone on rank 0 draws (srprior.trainers.steppers).
"""

from __future__ import annotations

import random

import numpy as np
import torch


def stream_seed(seed: int, rank: int = 0) -> int:
    """The seed of rank `rank`'s data stream and generator in a trial of seed `seed` (ranks < 1000)."""
    return seed * 1000 + rank


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG a step may draw from: torch (CPU, CUDA), numpy, random, and the step's own generator."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generator": generator.get_state()}


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
