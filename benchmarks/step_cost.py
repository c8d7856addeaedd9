"""Cost of the attribution-prior training step vs the plain L1 step, per preset and device.

Prints one row per (device, preset): ms per plain step (L1 + Adam), ms per prior step (L1 + lambda*L_AP, thesis
Eq. 3.9), their ratio, extractor ms, peak memory of each, and the prior step's phases: forward, input-gradient
backward (create_graph, Eq. 3.2) and double backward + Adam. The minimal prior step is one forward, one input
gradient and one (double) backward; the thesis reports "factor 2" over plain training.

Each (device, preset) runs in a fresh spawned process, so CPU peak RSS growth (resource.ru_maxrss over the
post-setup baseline) is not polluted by earlier presets; CUDA peaks are torch.cuda.max_memory_allocated. On CPU
the prior step is timed once, as the phase-instrumented eager step (identical work); on CUDA TrainStep itself is
timed (honouring --bf16/--cuda-graph) and the breakdown comes from extra synchronised eager steps. CPU defaults
(1 warm-up, best of 2 timed steps) keep the three tiny presets to about ten minutes of CPU time.
CPU steps are timed by the process's CPU time with one torch thread (--threads): wall time on a shared machine
counts other users' work and once reported the prior step faster than the plain one; CPU time counts only this
process's (with N threads it sums theirs, so ms are thread-seconds). CUDA steps are timed by the wall clock
between synchronisations.
`--variants eager tf32 bf16 ...` measures several variants per preset in one process (the GPU suite; CUDA peaks
are reset per variant, CPU peaks are running maxima).
Usage: python benchmarks/step_cost.py [--presets edsr-t rcan-t rnan-t] [--device cpu|cuda|all] [--batch 16]
       [--iters N] [--warmup N] [--threads N] [--bf16] [--tf32] [--cuda-graph] [--channels-last]
       [--variants eager tf32 bf16 channels-last cuda-graph bf16+cuda-graph]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time


def _backends(args: argparse.Namespace, cuda: bool):
    """Set up torch as the variant asks and return the clock: CPU time with --threads threads on CPU, the wall
    clock on CUDA (TF32 when asked, cudnn.benchmark as the trainers set it)."""
    import torch

    if not cuda:
        torch.set_num_threads(args.threads)
        return time.process_time
    if args.tf32:  # TF32 tensor cores for matmuls too (torch's default already allows them for cuDNN convolutions)
        torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.benchmark = True  # fixed shapes, as trainers run them (trainers/loop.py)
    return time.perf_counter


def _inputs(preset: str, device: str, args: argparse.Namespace) -> tuple:
    """(model seeded 0, LR batch, HR batch) on `device`, NHWC with --channels-last."""
    import torch

    from srprior.archs import build_model
    from srprior.data.datasets import PatchSampler
    from srprior.data.embedded import default_split

    train, _ = default_split(args.scale)
    lr, hr = PatchSampler(train, args.scale, patch=args.patch, batch=args.batch, seed=0).next()
    lr, hr = lr.to(device), hr.to(device)
    torch.manual_seed(0)
    model = build_model(preset, args.scale).to(device)
    if args.channels_last:  # NHWC weights and batches (cuDNN's preferred layout for bf16/tensor cores)
        model = model.to(memory_format=torch.channels_last)
        lr, hr = (t.contiguous(memory_format=torch.channels_last) for t in (lr, hr))
    return model, lr, hr


def _measure(preset: str, device: str, args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    from srprior.method.prior import PriorConfig, attribution, prior_loss
    from srprior.method.ssm import extract
    from srprior.method.step import TrainStep, make_optimizer

    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    clock = _backends(args, cuda)
    model, lr, hr = _inputs(preset, device, args)
    cfg = PriorConfig(lambda_ap=1e-4)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    iters = args.iters if args.iters is not None else (20 if cuda else 2)
    timed = _timer(cuda, clock, sync, warmup, iters)
    row = {"device": torch.cuda.get_device_name() if cuda else f"cpu x{torch.get_num_threads()} (CPU time)",
           "preset": preset}
    row["extract_ms"], _ = timed(lambda: extract(lr, cfg.extractor))
    plain = TrainStep(model, make_optimizer(model), PriorConfig(lambda_ap=0.0), args.scale, bf16=args.bf16,
                      cuda_graph=args.cuda_graph)
    row["plain_ms"], row["plain_mib"] = timed(lambda: plain(lr, hr))
    opt, params = make_optimizer(model), list(model.parameters())
    phases: list[tuple[float, float, float]] = []

    def instrumented() -> None:  # TrainStep's eager prior step, synchronised between phases
        ext = extract(lr, cfg.extractor)
        opt.zero_grad(set_to_none=True)
        sync()
        t0 = clock()
        x = lr.detach().requires_grad_(True)
        sr = prior._forward(x)
        l1 = F.l1_loss(sr, hr)
        sync()
        t1 = clock()
        attr = attribution(sr, x, ext, args.scale, create_graph=True)
        sync()
        t2 = clock()
        l_ap, _ = prior_loss(attr, ext, cfg)
        torch.autograd.backward(l1 + cfg.lambda_ap * l_ap, inputs=params)
        opt.step()
        sync()
        t3 = clock()
        phases.append((1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2)))

    prior = TrainStep(model, make_optimizer(model), cfg, args.scale, bf16=args.bf16, cuda_graph=args.cuda_graph)
    if cuda:  # the step as trainers run it (bf16 / CUDA graph flags), plus the synchronised breakdown below
        row["prior_ms"], row["prior_mib"] = timed(lambda: prior(lr, hr))
        timed(instrumented)
    else:  # on CPU the instrumented step *is* TrainStep's eager step (syncs are no-ops): time it once only
        row["prior_ms"], row["prior_mib"] = timed(instrumented)
    last = phases[warmup:]
    row["fwd_ms"], row["igrad_ms"], row["dbl_opt_ms"] = (min(p[i] for p in last) for i in range(3))
    if args.bf16:
        row["bf16_s_err"] = _bf16_s_err(model, lr, cfg, args.scale, device)
    return row


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timer(cuda: bool, clock, sync, warmup: int, iters: int):
    """timed(fn) -> (best ms over the timed steps, peak MiB above the baseline at this call). Best-of-N as in
    timeit: on a shared CPU interference only ever adds time. ru_maxrss is a running peak, so run lighter steps
    first."""
    import torch

    setup_rss = _rss_mib()

    def timed(fn) -> tuple[float, float]:
        base = setup_rss
        if cuda:
            sync()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 2**20
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(iters):
            sync()
            t0 = clock()
            fn()
            sync()
            times.append(1e3 * (clock() - t0))
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mib()
        return min(times), peak - base

    return timed


def _bf16_s_err(model, lr, cfg, scale: int, device: str) -> float:
    """Accuracy of the ratios s with a bf16 forward vs fp32: their largest absolute difference."""
    import torch

    from srprior.method.prior import attribution, prior_loss
    from srprior.method.ssm import extract

    ext = extract(lr, cfg.extractor)
    s = {}
    for flag in (False, True):
        x = lr.detach().requires_grad_(True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=flag):
            sr = model(x)
        attr = attribution(sr.float(), x, ext, scale, create_graph=False)
        s[flag] = prior_loss(attr, ext, cfg)[1]["s"]
    return float((s[True] - s[False]).abs().max())


VARIANT_FLAGS = {"eager": {}, "tf32": {"tf32": True}, "bf16": {"bf16": True}, "channels-last": {"channels_last": True},
                 "cuda-graph": {"cuda_graph": True}}


def _measure_variants(preset: str, device: str, args: argparse.Namespace, variants: list[str]) -> list[dict]:
    """Rows of `variants` ("eager", "tf32", "bf16+cuda-graph", ...) in one process: one CUDA start-up per preset
    (the GPU suite's time limit); the matmul precision is reset between variants."""
    import torch

    default = torch.get_float32_matmul_precision()
    rows = []
    for variant in variants:
        torch.set_float32_matmul_precision(default)
        flags = {"bf16": False, "tf32": False, "cuda_graph": False, "channels_last": False}
        for part in variant.split("+"):
            flags.update(VARIANT_FLAGS[part])
        try:
            rows.append({**_measure(preset, device, argparse.Namespace(**{**vars(args), **flags})), "variant": variant})
        except Exception as exc:  # one lever failing on a card must not cost the other levers' rows
            print(f"{preset} {variant} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["edsr-t", "rcan-t", "rnan-t"])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all = CPU, plus CUDA when available")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default: CPU 2, CUDA 20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations (default: CPU 1, CUDA 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (default 1: CPU time per thread)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the model forward in the steps")
    parser.add_argument("--tf32", action="store_true", help="TF32 for matmuls and convolutions (CUDA)")
    parser.add_argument("--cuda-graph", action="store_true", help="capture the steps as CUDA graphs (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="model and batches in channels-last layout")
    parser.add_argument("--write-efficiency", action="store_true",
                        help="store the CPU rows (fp32 eager, --threads 1) in the plan's efficiency data "
                             "(platform/srprior/efficiency.json), one entry per preset, mode and shape")
    parser.add_argument("--variants", nargs="+", help="rows per preset, in one process each, instead of the flags "
                        f"above: {' '.join(VARIANT_FLAGS)} or combinations such as bf16+cuda-graph")
    args = parser.parse_args(argv)
    if args.write_efficiency and (args.variants or args.threads != 1 or args.bf16 or args.channels_last):
        parser.error("--write-efficiency: the plan's CPU entries are fp32 eager steps on one thread")
    for variant in args.variants or []:
        if not set(variant.split("+")) <= set(VARIANT_FLAGS):
            parser.error(f"--variants {variant}: use {', '.join(VARIANT_FLAGS)}, joined by '+'")

    import torch

    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])}
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible")
    print(f"batch {args.batch}, LR {args.patch}x{args.patch}, x{args.scale}, lambda_AP 1e-4, w=sim, local, n_ssr 1; "
          f"bf16={args.bf16} tf32={args.tf32} cuda_graph={args.cuda_graph} (CUDA only) "
          f"channels_last={args.channels_last}; CPU: process CPU time, {args.threads} thread(s); "
          f"torch {torch.__version__}")
    cols = ["device", "preset"] + (["variant"] if args.variants else []) + [
        "plain_ms", "prior_ms", "ratio", "extract_ms", "fwd_ms", "igrad_ms", "dbl_opt_ms", "plain_mib",
        "prior_mib"] + (["bf16_s_err"] if args.bf16 or any("bf16" in v for v in args.variants or []) else [])
    print(" | ".join(cols))
    ctx = mp.get_context("spawn")
    for device in devices[args.device]:
        for preset in args.presets:
            with ctx.Pool(1) as pool:  # fresh process: clean peak memory, no cross-preset caching
                rows = (pool.apply(_measure_variants, (preset, device, args, args.variants)) if args.variants
                        else [pool.apply(_measure, (preset, device, args))])
            for row in rows:
                row["ratio"] = row["prior_ms"] / row["plain_ms"]
                print(" | ".join(f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                                 for c in cols), flush=True)
                if args.write_efficiency and device == "cpu":
                    _write_efficiency(preset, row, (args.scale, args.batch, args.patch))
    return 0


def _write_efficiency(preset: str, row: dict, shape: tuple[int, int, int]) -> None:
    """Replace this preset's CPU fp32 entries at `shape` (others stay: one list per mode, one entry per shape)."""
    import datetime
    import json

    from srprior.cost import EFFICIENCY_FILE, entry, load_efficiency, measured_at_shapes

    data = load_efficiency()
    by = f"benchmarks/step_cost.py --device cpu: process CPU time, 1 thread, {datetime.date.today()}"
    modes = data["devices"]["cpu"].setdefault("fp32", {}).setdefault(preset, {})
    for mode in ("plain", "prior"):
        new = entry(preset, mode, round(row[f"{mode}_ms"], 2), by, shape)
        kept = [e for e in measured_at_shapes(modes.get(mode, []))
                if (e.get("scale"), e.get("batch"), e.get("patch")) != shape]
        modes[mode] = new if not kept else kept + [new]
    EFFICIENCY_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    sys.exit(main())
