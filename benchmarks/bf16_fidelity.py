"""Does bf16 autocast change the prior's answer? Decided on CPU, where autocast is real bf16 arithmetic.

The thesis's effects are 0.01-0.05 dB and L_AP is a ratio of gradient norms, so a precision that moves L_AP by
more than seeds do would blur them. Two parts, both with the same seeds and batches under fp32 and under bf16
autocast of the model forward (srprior.method.step.TrainStep(bf16=True): losses, PoI sums and norms stay fp32):

1. one prior step's quantities per tiny preset (EDSR-T, RCAN-T, RNAN-T; batch 4, 32x32 LR, x2, lambda_AP 1e-4,
   w=sim, local): relative error of L_AP, cosine of the parameter gradients of L1 + lambda*L_AP and of L_AP alone;
2. 200-step training curves of edsr-t-micro / rcan-t-micro (batch 4, 24x24, embedded images): final L_AP and L1
   (mean of the last 50 steps) and validation PSNR, fp32 for SEEDS seeds and bf16 for the same seeds. The bf16
   effect is the paired |bf16 - fp32| (same seed: same init and batches; its signed mean, the shift, shows a
   bias); the noise is the fp32 seed-to-seed standard deviation. Verdict: harmless when every paired change is
   below the seed noise.

Prints Markdown tables, the verdict line and the CPU time (process time, one torch thread).
Usage: python benchmarks/bf16_fidelity.py [--steps 200] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from srprior.archs import build_model
from srprior.data.datasets import PatchSampler
from srprior.data.embedded import default_split
from srprior.evaluate import super_resolve
from srprior.method.prior import attribution, prior_config, prior_loss
from srprior.method.ssm import extract
from srprior.method.step import TrainStep, make_optimizer
from srprior.metrics import psnr

SCALE = 2
PRIOR = prior_config(lambda_ap=1e-4, w="sim", scenario="local")


def _grads(model, lr: torch.Tensor, hr: torch.Tensor, bf16: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(L_AP, flat grad of L1 + lambda*L_AP, flat grad of L_AP) of one prior step, without the optimizer."""
    step = TrainStep(model, make_optimizer(model), PRIOR, SCALE, bf16=bf16)
    params = [p for p in model.parameters() if p.requires_grad]
    ext = extract(lr, PRIOR.extractor)
    x = lr.detach().requires_grad_(True)
    sr = step._forward(x)
    l1 = F.l1_loss(sr, hr)
    l_ap, _ = prior_loss(attribution(sr, x, ext, SCALE, create_graph=True), ext, PRIOR)
    g_ap = torch.autograd.grad(l_ap, params, retain_graph=True, materialize_grads=True)  # the tail bias: 0
    g_total = torch.autograd.grad(l1 + PRIOR.lambda_ap * l_ap, params)
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731
    return float(l_ap.detach()), flat(g_total), flat(g_ap)


def step_rows(presets: list[str], batches: int) -> list[dict]:
    train, _ = default_split(SCALE)
    rows = []
    for preset in presets:
        torch.manual_seed(0)
        model = build_model(preset, SCALE)
        sampler = PatchSampler(train, SCALE, patch=32, batch=4, seed=0)
        for b in range(batches):
            lr, hr = sampler.next()
            (l32, t32, a32), (l16, t16, a16) = (_grads(model, lr, hr, flag) for flag in (False, True))
            rows.append({"preset": preset, "batch": b, "l_ap_fp32": l32, "l_ap_rel_err": abs(l16 - l32) / abs(l32),
                         "cos_total": float(F.cosine_similarity(t32, t16, 0)),
                         "cos_l_ap": float(F.cosine_similarity(a32, a16, 0))})
    return rows


def train_curve(preset: str, seed: int, bf16: bool, steps: int) -> dict:
    """Final L_AP and L1 (mean of the last quarter of steps) and validation PSNR after `steps` prior steps."""
    train, val = default_split(SCALE)
    torch.manual_seed(seed)
    model = build_model(preset, SCALE)
    step = TrainStep(model, make_optimizer(model), PRIOR, SCALE, bf16=bf16,
                     generator=torch.Generator().manual_seed(seed))
    sampler = PatchSampler(train, SCALE, patch=24, batch=4, seed=seed)
    l_ap, l1 = [], []
    for _ in range(steps):
        out = step(*sampler.next())
        l_ap.append(float(out.l_ap))
        l1.append(float(out.l1))
    tail = max(1, steps // 4)
    model.eval()
    val_psnr = statistics.fmean(psnr(super_resolve(model, p.lr), p.hr, SCALE) for p in val)
    return {"l_ap": statistics.fmean(l_ap[-tail:]), "l1": statistics.fmean(l1[-tail:]), "psnr": val_psnr}


def curve_rows(presets: list[str], seeds: int, steps: int) -> list[dict]:
    rows = []
    for preset in presets:
        runs = {(bf16, s): train_curve(preset, s, bf16, steps) for bf16 in (False, True) for s in range(seeds)}
        for metric in ("l_ap", "l1", "psnr"):
            fp32 = [runs[False, s][metric] for s in range(seeds)]
            diff = [runs[True, s][metric] - runs[False, s][metric] for s in range(seeds)]
            mean = statistics.fmean(fp32)
            rel = metric != "psnr"  # losses in % of their mean, PSNR in dB
            scale = 100 / abs(mean) if rel else 1.0
            rows.append({"preset": preset, "metric": metric, "unit": "%" if rel else "dB", "fp32_mean": mean,
                         "bf16_change": statistics.fmean(map(abs, diff)) * scale,
                         "bf16_shift": statistics.fmean(diff) * scale,
                         "seed_noise": statistics.stdev(fp32) * scale})
    return rows


def verdict(curves: list[dict]) -> str:
    harmless = all(r["bf16_change"] < r["seed_noise"] for r in curves)
    ap = [r for r in curves if r["metric"] == "l_ap"]
    change = max(r["bf16_change"] for r in ap)
    noise = min(r["seed_noise"] for r in ap)
    return (f"verdict: bf16 changes L_AP by up to {change:.2g} % (seed noise at least {noise:.2g} %), "
            f"{'below' if change < noise else 'above'} seed noise; every metric below seed noise: "
            f"{'yes -> bf16 is harmless here' if harmless else 'no -> keep fp32'}")


def _table(rows: list[dict], cols: list[str]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["edsr-t", "rcan-t", "rnan-t"])
    parser.add_argument("--batches", type=int, default=2, help="prior steps compared per tiny preset")
    parser.add_argument("--micro", nargs="+", default=["edsr-t-micro", "rcan-t-micro"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds: need >= 2 for a seed-to-seed spread")
    torch.set_num_threads(1)  # CPU time of one thread: other load on a shared machine barely moves it
    t0 = time.process_time()
    print(f"# bf16 autocast vs fp32 on CPU, torch {torch.__version__}, one thread\n")
    print("## one prior step (batch 4, 32x32 LR, x2)\n")
    print(_table(step_rows(args.presets, args.batches),
                 ["preset", "batch", "l_ap_fp32", "l_ap_rel_err", "cos_total", "cos_l_ap"]), flush=True)
    t1 = time.process_time()
    print(f"\n## {args.steps}-step training (batch 4, 24x24), fp32 vs bf16 with seeds 0..{args.seeds - 1}\n")
    curves = curve_rows(args.micro, args.seeds, args.steps)
    print(_table(curves, ["preset", "metric", "unit", "fp32_mean", "bf16_change", "bf16_shift", "seed_noise"]))
    print(f"\n{verdict(curves)}")
    print(f"CPU time: steps {t1 - t0:.0f} s, training {time.process_time() - t1:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
