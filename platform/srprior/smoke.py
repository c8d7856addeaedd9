"""`srprior smoke`: train a micro model on the embedded default for a few steps and print validation PSNR.

It exercises the whole single-process path (data → model → step with the prior → metrics) in about a minute on a
laptop CPU, without Ray or MLflow, so a fresh install can be checked before any sweep.
"""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("smoke", help="train a micro model on the embedded default and print PSNR (no Ray)")
    p.add_argument("--preset", default="edsr-t-micro")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=32, help="LR patch size")
    p.add_argument("--lambda-ap", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from srprior.archs import build_model
    from srprior.data.datasets import PatchSampler
    from srprior.data.embedded import default_split
    from srprior.evaluate import bicubic_baseline, evaluate
    from srprior.method.prior import PriorConfig
    from srprior.method.step import TrainStep, make_optimizer

    torch.manual_seed(args.seed)
    train, val = default_split(scale=args.scale)
    sampler = PatchSampler(train, args.scale, patch=args.patch, batch=args.batch, seed=args.seed)
    model = build_model(args.preset, scale=args.scale)
    step = TrainStep(model, make_optimizer(model), PriorConfig(lambda_ap=args.lambda_ap), args.scale)
    start = time.perf_counter()
    for i in (bar := tqdm(range(args.steps), desc=f"{args.preset} x{args.scale}", unit="step")):
        out = step(*sampler.next())
        if i % 20 == 0:  # .item() syncs the device: only when shown
            bar.set_postfix(l1=f"{out.l1.item():.4f}", l_ap=f"{out.l_ap.item():.2e}")
    seconds = time.perf_counter() - start
    ours = evaluate(model, val, args.scale)
    bicubic = bicubic_baseline(val, args.scale)
    print(f"\n{args.preset} x{args.scale}, {args.steps} steps in {seconds:.1f} s, "
          f"embedded validation ({len(val)} images):")
    print(f"  bicubic  PSNR {bicubic['psnr']:.2f} dB  SSIM {bicubic['ssim']:.4f}")
    print(f"  {args.preset}  PSNR {ours['psnr']:.2f} dB  SSIM {ours['ssim']:.4f}")
    return 0
