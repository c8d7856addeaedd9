"""Throughput of K fused members (FusedTrainStep) vs the same K trials stepped one after another, per mode.

Prints one row per (mode, K): ms per fused step, model-steps/s fused (K / fused step time), model-steps/s of K
separate TrainSteps run sequentially in this process (K / time for the K steps), fused / sequential, and fused vs
one eager trial alone (1 / one TrainStep's time, measured once per mode); on CUDA also the fused step's peak
memory. Every member gets its own batch of ``--batch`` LR ``--patch``² crops from the embedded images, reused
for every timed step (data loading is not timed). Modes: plain (L1 + Adam) and prior (L1 + 1e-4 * L_AP, w=sim,
local, n_ssr 1). A timed block is ``--iters`` steps between two synchronisations; the best of ``--repeats``
blocks counts (interference on a shared host only ever adds time); fused, sequential and single-trial blocks
alternate. On CUDA blocks are timed by the wall clock; on CPU by this process's CPU time with one torch thread
(default ``--threads 1``), which other load on a shared host barely changes, unlike the wall clock.

CPU defaults stay within a few minutes on two cores: edsr-t-micro, batch 4, LR 24², K = 1 2 4 (edsr-t on CPU:
``--preset edsr-t``, about a minute per K at these sizes). CUDA defaults: edsr-t, batch 16, LR 48², K = 1 2 4 8 16.
Usage: python benchmarks/fused_throughput.py [--device cpu|cuda] [--preset edsr-t|rcan-t|rnan-t|...-micro]
       [--batch B] [--patch P] [--ks 1 2 4] [--modes plain prior] [--iters N] [--repeats N] [--bf16] [--cuda-graph]
       [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from srprior.archs import PRESETS, build_model
from srprior.data.datasets import PatchSampler
from srprior.data.embedded import default_split
from srprior.method.fused import FusedTrainStep
from srprior.method.prior import PriorConfig
from srprior.method.step import TrainStep, make_optimizer

CPU = {"preset": "edsr-t-micro", "batch": 4, "patch": 24, "ks": [1, 2, 4], "iters": 3, "repeats": 5, "threads": 1}
CUDA = {"preset": "edsr-t", "batch": 16, "patch": 48, "ks": [1, 2, 4, 8, 16], "iters": 10, "repeats": 3,
        "threads": None}
MODES = {"plain": PriorConfig(lambda_ap=0.0), "prior": PriorConfig(lambda_ap=1e-4)}


def best_ms(fns: dict, device: str, iters: int, repeats: int) -> dict[str, float]:
    """Best mean ms per call of each function over ``repeats`` rounds; a round times a block of ``iters`` calls of
    each function in turn (interleaved, so drifting load on a shared host hits all alike); two warm-up calls."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter if device == "cuda" else time.process_time
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn(), fn()
    for _ in range(repeats):
        for key, fn in fns.items():
            sync()
            t0 = clock()
            for _ in range(iters):
                fn()
            sync()
            best[key] = min(best[key], 1e3 * (clock() - t0) / iters)
    return best


def members(preset: str, scale: int, k: int, device: str) -> list[torch.nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model(preset, scale).to(device))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), help="default: edsr-t (CUDA), edsr-t-micro (CPU)")
    p.add_argument("--batch", type=int, help="crops per member (default: CUDA 16, CPU 4)")
    p.add_argument("--patch", type=int, help="LR crop side (default: CUDA 48, CPU 24)")
    p.add_argument("--ks", type=int, nargs="+", help="group sizes K (default: CUDA 1 2 4 8 16, CPU 1 2 4)")
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["plain", "prior"])
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--iters", type=int, help="steps per timed block (default: CUDA 10, CPU 3)")
    p.add_argument("--repeats", type=int, help="timed blocks, best counts (default: CUDA 3, CPU 5)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the model forward (fused and separate)")
    p.add_argument("--cuda-graph", action="store_true", help="CUDA-graph capture of fused and separate steps (CUDA)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on CPU, torch's default on CUDA)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device visible")
    for key, value in (CUDA if args.device == "cuda" else CPU).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else f"cpu, {torch.get_num_threads()} thread(s), CPU time"
    print(f"# fused throughput on {name}: {args.preset} x{args.scale}, batch {args.batch} per member, LR "
          f"{args.patch}x{args.patch}, K = {' '.join(map(str, args.ks))}; prior = lambda_AP 1e-4, w=sim, local; "
          f"bf16={args.bf16} cuda_graph={args.cuda_graph} (CUDA only); best of {args.repeats} x {args.iters} steps; "
          f"torch {torch.__version__}")
    print("| mode | K | fused ms/step | fused model-steps/s | sequential model-steps/s | fused / sequential "
          "| fused / one trial |" + (" fused peak MiB |" if dev == "cuda" else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if dev == "cuda" else ""))
    sampler = PatchSampler(default_split(args.scale)[0], args.scale, patch=args.patch, batch=args.batch, seed=0)
    pool = [sampler.next() for _ in range(max(args.ks))]
    for mode in args.modes:
        prior = MODES[mode]
        single = None
        for k in args.ks:
            lr = torch.stack([pool[i][0] for i in range(k)]).to(dev)
            hr = torch.stack([pool[i][1] for i in range(k)]).to(dev)
            models = members(args.preset, args.scale, k, dev)
            opts = {"bf16": args.bf16, "cuda_graph": args.cuda_graph}
            steps = [TrainStep(m, make_optimizer(m), prior, args.scale, **opts) for m in models]
            fused = FusedTrainStep([copy.deepcopy(m) for m in models], [prior] * k, args.scale, **opts)
            fns = {"seq": lambda: [s(lr[i], hr[i]) for i, s in enumerate(steps)], "fused": lambda: fused(lr, hr)}
            if single is None:  # one eager trial alone (a fresh model, so the K members' states stay untouched)
                one = members(args.preset, args.scale, 1, dev)[0]
                solo = TrainStep(one, make_optimizer(one), prior, args.scale, **opts)
                fns["single"] = lambda: solo(lr[0], hr[0])
            ms = best_ms(fns, dev, args.iters, args.repeats)
            single = single or ms["single"]
            seq_ms, fused_ms = ms["seq"], ms["fused"]
            row = [mode, k, f"{fused_ms:.1f}", f"{1e3 * k / fused_ms:.1f}", f"{1e3 * k / seq_ms:.1f}",
                   f"{seq_ms / fused_ms:.2f}x", f"{k * single / fused_ms:.2f}x"]
            del steps, models, fns
            if dev == "cuda":  # one more fused step with only the fused state resident
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                fused(lr, hr)
                row.append(f"{torch.cuda.max_memory_allocated() / 2**20:.0f}")
            print("| " + " | ".join(map(str, row)) + " |", flush=True)
            del fused
    return 0


if __name__ == "__main__":
    sys.exit(main())
