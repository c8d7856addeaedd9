"""`srprior smoke`: one trial of the smoke budget, trained in this process by the platform's own loop, its held-out
PSNR printed next to bicubic.

The quick path is the real loop: the trial is the smoke budget's (its recipe: steps, batch, patch, learning rate,
evaluation crops) with the preset, λ_AP and seed given here, trained by srprior.trainers.loop.train through a
LocalSession — the seed rule, sampler and step of every sweep trial, without Ray or MLflow — so a fresh install
is checked on exactly what sweeps run.
"""

from __future__ import annotations

import argparse

from srprior.errors import float_in, int_in

BUDGET = "smoke"


def register(sub: argparse._SubParsersAction) -> None:
    from srprior.archs import PRESETS
    from srprior.trainers.budgets import get_budget

    science = get_budget(BUDGET).science
    p = sub.add_parser("smoke", help="check an install in about a minute: train a micro model, print its PSNR "
                                     "next to bicubic (no Ray, no MLflow)",
                       description="Train one trial of the smoke budget on the embedded default images in this "
                                   "process (the sweep's training loop) and print its held-out test PSNR/SSIM next "
                                   "to bicubic upscaling. A check that the install works, not a result: the tables "
                                   "come from `srprior sweep`.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="edsr-t-micro", choices=sorted(PRESETS), metavar="NAME",
                   help="model preset of Table 4.1 (edsr-t, rcan-t, rnan-t, edsr-b, ...); the -micro versions "
                        "are made for CPUs")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4), help="upscaling factor")
    p.add_argument("--steps", type=int_in(1, 10**6), default=science["steps"],
                   help=f"training steps (Adam, learning rate {science['learning_rate']:g}: the smoke budget's)")
    p.add_argument("--batch", type=int_in(1, 4096), default=science["batch"], help="patches per step")
    p.add_argument("--patch", type=int_in(8, 2048), default=science["lr_patch"], help="LR patch side in pixels")
    p.add_argument("--lambda-ap", type=float_in(0, 1e6), default=1e-4,
                   help="weight λ_AP of the attribution prior (0: off)")
    p.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0,
                   help="the trial's seed (its weights and data stream, as in a sweep)")
    p.set_defaults(func=run)


def smoke_trial(args: argparse.Namespace):
    """(Trial, RunContext): the smoke budget's trial with this command's preset, shape, λ_AP and seed."""
    from srprior.schema import RunContext, Trial, trial_config
    from srprior.trainers.budgets import get_budget

    budget = get_budget(BUDGET)
    config = trial_config("srprior smoke", **{**budget.science, "preset": args.preset, "scale": args.scale,
                                              "steps": args.steps, "batch": args.batch, "lr_patch": args.patch,
                                              "lambda_ap": args.lambda_ap})
    return Trial(config, args.seed), RunContext(**{**budget.context, "figures": False})


def verdict(ours: float, bicubic: float, preset: str, steps: int) -> str:
    """What the two PSNRs mean: a smoke run is an install check, and a micro model this short stays below
    bicubic, which a first-time user must not mistake for a broken prior."""
    import textwrap

    gap = ours - bicubic
    if gap >= 0:
        return f"{preset} is {gap:.2f} dB above bicubic after {steps} steps."
    return textwrap.fill(
        f"{preset} is {-gap:.2f} dB below bicubic: expected for a micro model after {steps} steps on a CPU (an "
        "install check, not a result). Real models close the gap: the thesis's EDSR-T is about 4 dB above bicubic "
        "on Set5 after 50,000 steps; run `srprior sweep --table 4.2 --budget short` (GPU, real presets) or "
        "--budget thesis.", width=100)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from srprior.contracts import BICUBIC, OBJECTIVE, SELECTED, STEP, TRAIN_STEPS_S
    from srprior.trainers.loop import train
    from srprior.trainers.worker import LocalSession

    trial, ctx = smoke_trial(args)
    cfg = trial.config

    class Progress(LocalSession):
        def report(self, metrics: dict, state: dict | None) -> None:
            super().report(metrics, state)
            bar.update(metrics[STEP] - bar.n)
            bar.set_postfix({"val PSNR": f"{metrics[OBJECTIVE]:.2f}"})

    with tqdm(total=cfg.schedule.steps, desc=f"{args.preset} x{args.scale}", unit="step") as bar:
        (metrics,) = train([trial], [ctx], Progress())
    if not metrics:
        print(f"srprior smoke: {args.preset} failed (non-finite loss or metrics); see the lines above")
        return 1
    print(f"\n{args.preset} x{args.scale}, {args.steps} steps in {metrics[TRAIN_STEPS_S]:.1f} s, embedded test "
          f"images ({cfg.data.max_eval_images or 'all'}, held out; {cfg.data.eval_crop}² LR crops as the smoke "
          "budget evaluates):")
    for name, prefix in (("bicubic", BICUBIC), (args.preset, SELECTED)):
        print(f"  {name}  PSNR {metrics[prefix + 'psnr_embedded']:.2f} dB  SSIM {metrics[prefix + 'ssim_embedded']:.4f}")
    print(verdict(metrics[SELECTED + "psnr_embedded"], metrics[BICUBIC + "psnr_embedded"], args.preset, args.steps))
    return 0
