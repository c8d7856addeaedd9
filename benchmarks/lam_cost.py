"""Seconds per DI window (one LAM map: 50 blur-path steps, batched `chunk` steps per backward) per preset.

    python benchmarks/lam_cost.py                      # CPU, 64x64 LR, x2, edsr-t rcan-t rnan-t
    python benchmarks/lam_cost.py --device cuda --size 128 --reps 3

Prints a Markdown table. Random-init weights: cost does not depend on training, DI does (shown for reference).
On CPU the time is the process's CPU time with --threads torch threads (default 1), so other load on a shared
machine barely moves it; on CUDA it is wall time (lam() returns a numpy array, which syncs the device).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from srprior.archs import build_model
from srprior.method.lam import LAMConfig, di_windows, diffusion_index, lam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["edsr-t", "rcan-t", "rnan-t"])
    ap.add_argument("--size", type=int, default=64, help="LR side in pixels")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    clock = time.perf_counter if cuda else time.process_time
    if not cuda:
        torch.set_num_threads(args.threads)

    img = np.asarray(Image.fromarray(data.astronaut()[:256, 128:384]).resize((args.size, args.size), Image.LANCZOS))
    window = di_windows(img.shape, args.scale)[0]
    cfg = LAMConfig(steps=args.steps, chunk=args.chunk)
    print(f"device={args.device} threads={torch.get_num_threads()} LR={args.size}x{args.size} x{args.scale} "
          f"steps={args.steps} chunk={args.chunk} reps={args.reps}; {'wall' if cuda else 'CPU'} time")
    print("| preset | params (M) | s / window | DI (random init) |")
    print("|---|---|---|---|")
    for preset in args.presets:
        torch.manual_seed(0)
        model = build_model(preset, scale=args.scale).to(args.device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        lam(model, img, window, LAMConfig(steps=1, chunk=1))  # warm-up (allocator, cuDNN autotune)
        times = []
        for _ in range(args.reps):
            if cuda:
                torch.cuda.synchronize()
            t0 = clock()
            attr = lam(model, img, window, cfg)
            times.append(clock() - t0)  # lam() returns a numpy array, so the device is synced
        print(f"| {preset} | {params:.2f} | {np.median(times):.2f} | {diffusion_index(attr):.2f} |", flush=True)


if __name__ == "__main__":
    main()
