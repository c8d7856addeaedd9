"""`srprior eval bicubic --data DIR --scale 2 [3 4]`: the bicubic baseline's PSNR/SSIM table on the SR
benchmarks (srprior.evaluate.bicubic_table), as Markdown on stdout."""

from __future__ import annotations

import argparse
import os
import sys

from srprior.evaluate import BENCHMARK_FOLDERS, bicubic_table, markdown_table


def _run_bicubic(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from srprior.data.datasets import DatasetError

    if not args.data:
        raise DatasetError("pass --data DIR (the folder holding Set5/, Set14/, ...) or set SRPRIOR_DATA")
    results = bicubic_table(args.data, args.scale, args.datasets,
                            progress=lambda it, desc: tqdm(it, desc=desc, unit="img", file=sys.stderr),
                            extra_shave=args.extra_shave)
    print(markdown_table(results, args.scale, args.datasets))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """`srprior eval bicubic --data DIR --scale 2 [3 4]`: the bicubic baseline table."""
    ev = subparsers.add_parser("eval", help="the bicubic baseline's PSNR/SSIM on the SR benchmarks")
    sub = ev.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    bic = sub.add_parser("bicubic", help="PSNR/SSIM of MATLAB-bicubic upscaling (Markdown table on stdout)")
    bic.add_argument("--data", default=os.environ.get("SRPRIOR_DATA"),
                     help="benchmark root in the EDSR layout (default: $SRPRIOR_DATA)")
    bic.add_argument("--scale", type=int, nargs="+", default=[2], choices=(2, 3, 4), help="one or more scales")
    bic.add_argument("--datasets", nargs="+", default=list(BENCHMARK_FOLDERS), help="dataset folders under --data")
    bic.add_argument("--extra-shave", type=int, default=0,
                     help="border pixels shaved beyond the scale (6: the thesis's §4.3 '6 + scale')")
    bic.set_defaults(func=_run_bicubic)
