"""`srprior sweep` / `python sweep.py`: thesis tables (or an Optuna search) as Ray Tune trials of Ray Train runs.

The command line becomes one SweepOptions (srprior.options) here, once; srprior.sweep.run does the rest: the plan
(srprior.plan: every option and every trial validated, no Ray) → the MLflow store is asked which trial keys are
already FINISHED (reused: not trained again, by any table or search) or unfinished (resumed: same MLflow run,
same Train checkpoint folder) → `--plan` stops here and prints it → otherwise the MLflow server and, only when
something is left to train, Ray start → Tune runs one trial per key to train (or Optuna's TPE suggestions ×
seeds with Repeater) → a report per table is printed and logged to the sweep's parent run → the UI command is
printed last. `--retrain` trains every planned trial again into new runs tagged srprior.retrain.
"""

from __future__ import annotations

import argparse

from srprior.errors import Parser, float_in, int_in, run_command
from srprior.options import SweepOptions
from srprior.schema import field_lines
from srprior.sweep.sequential import run_sequential

SET_EPILOG = "science fields for --set KEY=VALUE (default: the budget's, else the one shown):\n" + "\n".join(field_lines())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from srprior.plan import ALL_TABLES

    what = p.add_mutually_exclusive_group()
    what.add_argument("--table", help=f"thesis table(s) to reproduce: {', '.join(ALL_TABLES)}, smoke, "
                                      "comma-separated, or 'all'")
    what.add_argument("--search", help="Optuna search to run: edsr-t, rnan-t, smoke")
    p.add_argument("--budget", default="smoke", help="smoke (CPU, minutes), cpu-hour (2 CPU cores, Table 4.2's EDSR "
                                                     "rows), short (GPU, ~10 min/trial), thesis (default: smoke)")
    p.add_argument("--plan", action="store_true", help="print the plan (trials to train, reused, resources, "
                                                        "estimated cost) and exit: no Ray, nothing written")
    p.add_argument("--json", action="store_true", help="with --plan: print the plan as one JSON object (per preset "
                                                        "training and evaluation H100-hours, trials, designs)")
    p.add_argument("--retrain", action="store_true", help="train every planned trial again into new runs "
                                                          "(default: reuse FINISHED runs with the same key)")
    p.add_argument("--seeds", type=int_in(1, 1000),
                   help="seeds per row / per sampled config (default: the budget's); more seeds than a row has add "
                        "new ones, and only those train")
    p.add_argument("--until-decided", action="store_true",
                   help="group-sequential seeds: a pilot for every row, then seeds only for rows of undecided "
                        "claims, up to a cap (`--plan` prints the design and its expected cost)")
    p.add_argument("--seeds-for-power", type=float_in(0, 100, low_open=True), metavar="EFFECT",
                   help="print the seeds per row each table needs to detect EFFECT (dB) with 80%% power, sized "
                        "from its finished runs (or the thesis's spread), and exit")
    p.add_argument("--rows", help="comma-separated row ids to run (default: all)")
    p.add_argument("--samples", type=int_in(1, 10**5), help="search: configurations to sample (default: the search's)")
    p.add_argument("--asha", action="store_true", help="search: ASHA early stopping (not advised with seeds)")
    p.add_argument("--steps", type=int_in(1, 10**8), help="training steps per trial (default: the budget's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a science field of every trial, e.g. lambda_ap=1e-4, n_ssr=3, learning_rate=2e-4 "
                        "(repeatable; the fields and their defaults are listed below)")
    p.add_argument("--data-root", help="benchmarks in the EDSR layout (default $SRPRIOR_DATA; smoke: embedded)")
    p.add_argument("--train-root", help="DIV2K root or HR image folder (default: the embedded images)")
    p.add_argument("--benchmarks", help="comma-separated subset of set5,set14,bsd100,urban100,hardcases")
    p.add_argument("--max-eval-images", type=int_in(0, 10**6), help="first N images per evaluation set (0: all)")
    p.add_argument("--no-di", action="store_true", help="skip the LAM diffusion index")
    p.add_argument("--figures", action=argparse.BooleanOptionalAction,
                   help="per-trial PNGs: bicubic | SR | HR, the extractor's PoI/SSRs on the SSM, the LAM map "
                        "(default: the budget's; on in every budget, about 1 s per trial)")
    p.add_argument("--cuda-graph", action="store_true", help="capture each one-worker trial's step as a CUDA graph")
    _add_where_arguments(p)


def _add_where_arguments(p: argparse.ArgumentParser) -> None:
    """Where a sweep runs and writes: storage, resume, Ray resources, fault hooks."""
    p.add_argument("--output-dir", help="MLflow store, Ray results, reports (default: $SRPRIOR_OUTPUT, in a Ray "
                                        "job ~/srprior-outputs, else ./outputs)")
    p.add_argument("--storage", help="Ray storage (default <output-dir>/ray; NFS path or s3:// on clusters)")
    p.add_argument("--shared-storage", action="store_true", help="--storage is a folder mounted on every node "
                                                                 "(NFS): allow it on a multi-node cluster")
    p.add_argument("--name", help="sweep id (default <table|search>-<name>-<budget>-<time>)")
    p.add_argument("--resume", nargs="?", const="latest", help="resume sweep NAME (default: the latest)")
    p.add_argument("--workers", type=int_in(1, 1024), help="Ray Train workers (DDP ranks) per trial (default 1)")
    p.add_argument("--fuse", type=int_in(1, 256),
                   help="train up to K trials of one architecture as one fused network in one Ray Train run "
                        "(default: 16/8 for small models on a GPU, 16 for micro models on a CPU, else 1)")
    p.add_argument("--gpus-per-trial", type=float_in(0, 1024),
                   help="GPU share per trial (default: from the model size)")
    p.add_argument("--max-concurrent", type=int_in(1, 10**4), help="trials at once (default: what the resources fit)")
    p.add_argument("--num-cpus", type=int_in(1, 10**5), help="CPUs for a local Ray (default: all)")
    p.add_argument("--address", type=_address, help="Ray cluster to join (default: $RAY_ADDRESS or a running "
                                                    "`ray start`; 'local': always start a private Ray)")
    p.add_argument("--max-failures", type=int_in(0, 100),
                   help="worker restarts per trial from its checkpoint (default 3)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own output (trial tables, worker logs) "
                                                          "instead of srprior's progress line")
    p.add_argument("--fault-kill-at-step", type=int_in(0), help=argparse.SUPPRESS)  # tests: kill a worker once


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run thesis tables or an Optuna search on Ray, tracked in MLflow",
                       epilog=SET_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=lambda args: _run(SweepOptions.of(vars(args))))


def _address(text: str) -> str:
    """--address: 'local', 'auto' or HOST:PORT (Ray's own parser raises a traceback on anything else)."""
    host, sep, port = text.rpartition(":")
    if text in ("local", "auto") or (sep and host and port.isdigit() and 0 < int(port) < 65536):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not 'local', 'auto' or HOST:PORT (e.g. 10.0.0.10:6379)")


def _run(opts: SweepOptions) -> int:
    """The sweep as a command: user errors (a bad option, a stored sweep from another srprior) as one line."""
    return run_command("srprior sweep", run_sequential, opts)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="sweep.py", description=__doc__.splitlines()[0], epilog=SET_EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return _run(SweepOptions.of(vars(parser.parse_args(argv))))
