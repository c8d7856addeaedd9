"""Where a sweep's time goes: Ray Tune + Train start-up per trial vs. training steps; GPU sharing throughput.

CPU (always): a smoke sweep (table `smoke`, 2 rows × 2 seeds) on a private local Ray; per trial the seconds from
the Tune trial's start to its first training step and the share of the trial's wall time spent outside training
steps (process start-up, data, validation, checkpoints, final evaluation, MLflow).
GPU (only when CUDA is available): k = 1, 2, 4, 8 EDSR-T trials with the prior sharing one GPU (1/k GPU each);
aggregate prior steps/s = all trials' steps / (last step of any trial - first step of any trial).

    python benchmarks/sweep_overhead.py [--gpu-steps 300] [--output-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from srprior import contracts
from srprior.sweep.run import run_sweep
from srprior.options import SweepOptions

GPU_TRIALS = {1: (["edsr-t/lambda-1e-4"], 1), 2: (["edsr-t/lambda-1e-4"], 2), 4: (["edsr-t/lambda-1e-4"], 4),
              8: (["edsr-t/lambda-1e-4", "edsr-t/lambda-5e-4"], 4)}  # k -> (Table 4.2 rows, seeds per row)


def final_results(experiment: Path) -> list[dict]:
    """The last result Tune recorded for every trial of an experiment folder."""
    out = []
    for result in sorted(experiment.glob("*/result.json")):
        lines = result.read_text().splitlines()
        if lines:
            out.append(json.loads(lines[-1]))
    return out


def run(opts: dict, output: Path) -> tuple[float, list[dict]]:
    start = time.monotonic()
    if run_sweep(SweepOptions.of({"output_dir": str(output), "address": "local", **opts})) != 0:
        raise SystemExit(f"sweep {opts['name']} failed; see the log above")
    return time.monotonic() - start, final_results(output / "ray" / opts["name"])


def cpu_part(output: Path) -> None:
    wall, results = run({"table": "smoke", "budget": "smoke", "seeds": 2, "name": "overhead-cpu"}, output)
    print("\n| trial | to first step (s) | trial wall (s) | in training steps (s) | outside steps |")
    print("|---|---|---|---|---|")
    firsts, walls, steps = [], [], []
    for r in results:
        trial = r["config"]["trial"]
        first, total, inside = r[contracts.TO_FIRST_STEP_S], r[contracts.TRIAL_WALL_S], r[contracts.TRAIN_STEPS_S]
        firsts.append(first), walls.append(total), steps.append(inside)
        print(f"| {trial['row']} seed {trial['seed']} | {first:.1f} | {total:.1f} | {inside:.2f} | "
              f"{1 - inside / total:.1%} |")
    n = len(results)
    print(f"| mean of {n} | {sum(firsts) / n:.1f} | {sum(walls) / n:.1f} | {sum(steps) / n:.2f} | "
          f"{1 - sum(steps) / sum(walls):.1%} |")
    print(f"\nsmoke sweep wall time (Ray start, MLflow server, {n} trials, report): {wall:.0f} s on "
          f"{os.cpu_count()} CPUs")


def gpu_part(output: Path, steps: int) -> None:
    os.environ.pop("SRPRIOR_DATA", None)  # train and validate on the embedded images: no data loading cost
    print("\n| k trials on 1 GPU | GPU per trial | aggregate prior steps/s | vs k = 1 |\n|---|---|---|---|")
    single = None
    for k, (rows, seeds) in GPU_TRIALS.items():
        _, results = run({"table": "4.2", "rows": ",".join(rows), "seeds": seeds, "budget": "short",
                          "steps": steps, "no_di": True, "figures": False, "max_eval_images": 1,
                          "gpus_per_trial": 1 / k, "max_concurrent": k, "name": f"overhead-gpu-k{k}"}, output)
        window = max(r[contracts.LAST_STEP_UNIX] for r in results) - min(r[contracts.FIRST_STEP_UNIX] for r in results)
        rate = len(results) * steps / window
        single = single or rate
        print(f"| {k} | 1/{k} | {rate:.1f} | {rate / single:.2f}× |")
    print("\ntarget: >= 2× the single-trial rate at k = 8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-steps", type=int, default=300, help="training steps per GPU trial")
    parser.add_argument("--output-dir", help="where the sweeps write (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(args.output_dir or tmp).resolve()
        cpu_part(output)
        import torch

        if torch.cuda.is_available():
            gpu_part(output, args.gpu_steps)
        else:
            print("\nGPU part skipped: CUDA is not available")


if __name__ == "__main__":
    main()
