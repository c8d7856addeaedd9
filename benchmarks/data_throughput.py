"""Training-patch throughput of the in-memory PatchSampler on one CPU thread, and the memory it holds.

    python benchmarks/data_throughput.py [--t91 DIR] [--batches 300]

Rows: the embedded scikit-image split (always) and T91 (``--t91`` or ``$SRPRIOR_DATA/T91/HR``; LR
generated with MATLAB bicubic). "images" is sampled/loaded: images whose LR is smaller than the
patch are dropped (drop_small=True). RSS is the process resident set after the sampler is built. Times are the
process's CPU time (one thread), so other load on a shared machine barely moves them; "load s" leaves out
waiting for the disk.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

from srprior.data.datasets import PatchSampler, load_folder
from srprior.data.embedded import default_split


def rss_mib() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, load, scale: int, patch: int, batch: int, batches: int) -> dict:
    rss0, t0 = rss_mib(), time.process_time()
    pairs = load()
    load_s = time.process_time() - t0
    sampler = PatchSampler(pairs, scale, patch=patch, batch=batch, seed=0, drop_small=True)
    data_mib = sum(p.hr.nbytes + p.lr.nbytes for p in pairs) / 2**20
    sampler.next()  # warm-up
    t0 = time.process_time()
    for _ in range(batches):
        sampler.next()
    dt = time.process_time() - t0
    return {"source": name, "images": f"{len(sampler)}/{len(pairs)}",
            "HR Mpx": sum(p.hr.shape[0] * p.hr.shape[1] for p in pairs) / 1e6,
            "load s": load_s, "patches/s": batches * batch / dt, "ms/batch": 1e3 * dt / batches,
            "pairs MiB": data_mib, "RSS MiB": rss_mib(), "RSS +MiB": rss_mib() - rss0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--t91", type=Path, default=None, help="T91 HR folder (default $SRPRIOR_DATA/T91/HR)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t91 = args.t91 or (Path(os.environ["SRPRIOR_DATA"]) / "T91" / "HR" if os.environ.get("SRPRIOR_DATA") else None)
    sources = [("embedded (skimage train)", lambda: default_split(args.scale)[0])]
    if t91 is not None and t91.is_dir():
        sources.append((f"T91 ({t91})", lambda: load_folder(t91, args.scale)))
    else:
        print("T91 skipped: pass --t91 DIR or set SRPRIOR_DATA")
    rows = [measure(n, f, args.scale, args.patch, args.batch, args.batches) for n, f in sources]
    print(f"PatchSampler x{args.scale}, batch {args.batch}, LR patch {args.patch}x{args.patch}, "
          f"{args.batches} batches, 1 thread, CPU time, numpy {np.__version__}")
    cols = list(rows[0])
    cells = [[f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
