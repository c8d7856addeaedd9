"""What the extractor readings `selection_area` and `invalid_samples` change, on real training crops.

Prints, per crop source and scenario: the share of crops whose PoI (candidate SSM) changes when the select_n
peaks are searched in the whole SSM (`selection_area=global`) instead of the scenario's area, and the share of
valid samples (those entering L_AP) at N_SSR = 1, 3, 5 under `invalid_samples=drop` and `keep`. Crops: 48x48 LR
training patches (x2, PatchSampler seed 0) of the embedded default's training images and, with SRPRIOR_DATA, of
BSD100. The README's readings table quotes these numbers.
Usage: python benchmarks/extractor_readings.py [--crops 512]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from srprior.data.datasets import PatchSampler, benchmark
from srprior.data.embedded import default_split
from srprior.method.ssm import ExtractorConfig, extract


def sources(n: int) -> dict[str, torch.Tensor]:
    out = {"embedded train": PatchSampler(default_split(2)[0], 2, patch=48, batch=n, seed=0).next()[0]}
    root = os.environ.get("SRPRIOR_DATA")
    if root and Path(root, "BSD100").is_dir():
        out["BSD100"] = PatchSampler(benchmark(root, "BSD100", 2), 2, patch=48, batch=n, seed=0).next()[0]
    return out


def row(name: str, lr: torch.Tensor, scenario: str) -> str:
    poi = [torch.cat([extract(p, ExtractorConfig(scenario=scenario, selection_area=a)).template for p in lr.split(64)])
           for a in ("scenario", "global")]
    cells = [f"{100 * (poi[0] != poi[1]).float().mean():.1f} %"]
    for mode in ("drop", "keep"):
        for n_ssr in (1, 3, 5):
            valid = torch.cat([extract(p, ExtractorConfig(scenario=scenario, n_ssr=n_ssr, invalid_samples=mode)).valid
                               for p in lr.split(64)])
            cells.append(f"{100 * valid.float().mean():.1f} %")
    return f"| {name} | {len(lr)} | {scenario} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| crops | n | scenario | PoI changed (global) | valid drop N=1 | drop N=3 | drop N=5 | keep N=1 | "
          "keep N=3 | keep N=5 |\n|---|---|---|---|---|---|---|---|---|---|")
    for name, lr in sources(args.crops).items():
        for scenario in ("local", "global"):
            print(row(name, lr, scenario), flush=True)


if __name__ == "__main__":
    main()
