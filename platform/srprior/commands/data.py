"""`srprior data download DATASET --root DIR` (srprior.data.download) and `srprior data hardcases ...`
(srprior.hardcases: HardCases-R rebuilt from the platform's own trained baselines)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srprior import hardcases
from srprior.data.download import DATASETS, check_root, download
from srprior.errors import int_in
from srprior.hardcases import COUNT, CROP, DEFAULT_OUT, build, cpu_archs
from srprior.tracking import DEFAULT_OUTPUT


def _download(args: argparse.Namespace) -> int:
    table = [a for a in DATASETS[args.dataset] if a.scale is None or a.scale in args.scales]
    check_root(args.root)  # user errors (DownloadError too): one line and exit 2 (srprior.errors.run_command)
    download(table, args.root, keep_archives=args.keep_archives, progress=not args.no_progress)
    print(f"{args.dataset}: ready under {args.root}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``srprior data download ...`` and ``srprior data hardcases ...``."""
    data = subparsers.add_parser("data", help="download and verify DIV2K and the SR benchmarks; rebuild HardCases",
                                 description="Datasets: download DIV2K and the SR benchmarks, rebuild HardCases.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    dl = actions.add_parser("download", help="fetch DIV2K or the SR benchmarks",
                             description="Download (resumable), verify size + SHA256 and unpack DIV2K or the EDSR "
                                         "benchmark archive so that SRPRIOR_DATA=ROOT works directly.")
    dl.add_argument("dataset", choices=sorted(DATASETS))
    dl.add_argument("--root", required=True, type=Path, help="folder to unpack into (SRPRIOR_DATA)")
    dl.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], choices=[2, 3, 4],
                    help="DIV2K LR scales to fetch (HR is always fetched)")
    dl.add_argument("--keep-archives", action="store_true", help="keep the verified archives after unpacking")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    dl.set_defaults(func=_download)
    _register_hardcases(actions)


def _hardcases(args: argparse.Namespace) -> int:
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    archs = args.archs.split(",") if args.archs else (cpu_archs() if device == "cpu" else None)
    # HardCasesError, ImageError, DatasetError: user errors, one line and exit 2 (srprior.errors.run_command)
    manifest = build(args.root, args.out, args.checkpoints, args.scale, args.count, args.max_candidates, device,
                     args.threads, progress=not args.no_progress, archs=archs, with_bicubic=args.with_bicubic)
    means = manifest["mean_psnr"]
    weak = [name for name, value in means.items() if value < means["bicubic"]]
    if weak:
        print(f"srprior data hardcases: warning: {', '.join(weak)} score below bicubic on average (under-trained?), "
              "so the spread across methods measures their failure more than image difficulty; for a test set, "
              "use baselines trained with --budget short or thesis", file=sys.stderr)
    used = ", ".join(f"{m['name']} ×{len(m['members'])}" if "members" in m else m["name"]
                     for m in manifest["methods"] if m["in_selection"])
    print(f"HardCases-R: {len(manifest['images'])} crops of {CROP}x{CROP} from {len(manifest['candidates']['names'])} "
          f"candidates scored by {used} -> {args.out} (manifest.json); control: "
          f"{len(manifest['control']['images'])} random tiles of the same pool -> {args.out / 'control'}")
    return 0


def _register_hardcases(actions: argparse._SubParsersAction) -> None:
    """``srprior data hardcases``."""
    p = actions.add_parser("hardcases", help="rebuild the HardCases test set (Gu et al.'s protocol) as HardCases-R",
                           description=hardcases.__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, type=Path, help="data root holding Urban100/HR (the candidate pool)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--checkpoints", nargs="+", default=[DEFAULT_OUTPUT],
                   help="state.pt files, checkpoint folders or platform output folders (default: outputs)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    p.add_argument("--archs", help="comma-separated architectures whose baselines score (default: all; on a CPU "
                                   f"{','.join(cpu_archs())}: RNAN's non-local blocks take ~23 s per crop there)")
    p.add_argument("--count", type=int_in(1, 10**6), default=COUNT, help="crops to keep (default 150)")
    p.add_argument("--max-candidates", type=int_in(0), default=0,
                   help="score at most N candidates, evenly spread (0: all)")
    p.add_argument("--device", default="auto", help="torch device for the models (default: cuda if available)")
    p.add_argument("--threads", type=int_in(1, 1024), default=1, help="torch CPU threads while scoring (default 1)")
    p.add_argument("--with-bicubic", action="store_true",
                   help="count bicubic among the methods (default: only the selector networks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_hardcases)
