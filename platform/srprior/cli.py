"""`srprior` console script: each sub-command lives in the module that implements it (`register(subparsers)`)."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add a sub-command. Imported lazily so `srprior --help` stays fast and a broken optional
# sub-command cannot take the others down.
COMMAND_MODULES = (
    "srprior.smoke",
    "srprior.data.download",
    "srprior.evaluate",
    "srprior.sweep",
    "srprior.report",
    "srprior.tracking",
)
MAIN_JOB = ["sweep", "--table", "4.2", "--budget", "smoke"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srprior", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # the README's main job: Table 4.2 as a CPU smoke sweep on the embedded default
        args = parser.parse_args(MAIN_JOB)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
