"""The `srprior` console script. Each command is a thin module of srprior.commands (its `register`) over a
library function."""

from __future__ import annotations

import argparse
import importlib
import sys

from srprior.errors import Parser, run_command

# Modules that add a command. Imported lazily so `srprior --help` stays fast and a broken optional command
# cannot take the others down.
COMMAND_MODULES = (
    "srprior.commands.smoke",
    "srprior.commands.data",
    "srprior.commands.eval",
    "srprior.commands.evaluate",
    "srprior.commands.sweep",
    "srprior.commands.report",
    "srprior.commands.ui",
)
MAIN_JOB = ["sweep", "--table", "4.2", "--budget", "smoke"]
MAIN_JOB_NOTE = ("srprior: starting the main job: Table 4.2 as a CPU smoke sweep on the embedded default images "
                 "(about 4 minutes on 2 cores); `srprior --help` for the rest.")

DESCRIPTION = """\
srprior trains super-resolution models (EDSR, RCAN, RNAN) with the non-local
attribution prior of the thesis and rebuilds its tables (4.2-4.8). Every trial
is tracked in MLflow with its curves and figures; each table cell is our
mean ± std over seeds next to the number the thesis printed.

Without a command, srprior runs the main job: Table 4.2 as a CPU smoke sweep
on the embedded default images (no data or GPU needed; about 4 minutes on
2 cores), then prints the table and how to open the MLflow UI."""

EPILOG = """\
a first hour:
  srprior smoke                     check the install (about a minute)
  srprior                           the main job; then `srprior ui` shows
                                    its runs, curves and figures
  srprior sweep --table 4.5 --plan  what a table would train and cost

`srprior COMMAND --help` lists a command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="srprior", description=DESCRIPTION, epilog=EPILOG,  # commands inherit one-line errors
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
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
    if args.command is None:  # the README's main job
        print(MAIN_JOB_NOTE, file=sys.stderr, flush=True)
        args = parser.parse_args(MAIN_JOB)
    prog = " ".join(filter(None, ("srprior", args.command, getattr(args, "eval_command", None),
                                  getattr(args, "data_command", None))))
    return run_command(prog, args.func, args)  # user errors: one line, exit 2


if __name__ == "__main__":
    sys.exit(main())
