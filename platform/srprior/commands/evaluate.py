"""`srprior evaluate --sweep NAME`: a sweep's finished runs gain the benchmark sets they lack (no training).

A thin command over srprior.trainers.backfill (see there): a set built after the runs finished (HardCases-R, a
user's new folder) is evaluated from each run's stored checkpoint and logged into the same MLflow run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from srprior import contracts
from srprior.trainers.backfill import BackfillError, backfill

def sweep_runs(uri: str, sweep: str) -> dict[str, Any]:
    """Key -> run of every cell of every table sweep `sweep` covered (its recorded plan)."""
    from srprior import tracking
    from srprior.report.cells import sweep_cells

    client = tracking.client(uri) if tracking.store_exists(uri) else None
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)] if client else []
    flt = contracts.tag_filter({contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep})
    tables = sorted({p.data.tags["table"] for p in contracts.search_all(client, exps, flt) if "table" in p.data.tags})
    if not tables:
        raise BackfillError(f"--sweep {sweep}: no table sweep of that name in {uri}; `srprior ui` lists the sweeps "
                            "(each parent run's name is its sweep)")
    keys = {key for table in tables for _, _, key in sweep_cells(table, uri, sweep)[0]}
    return tracking.runs_by_key(uri, keys)


def run(args: argparse.Namespace) -> int:
    from srprior import tracking

    output = tracking.output_dir(args.output_dir)
    uri = args.tracking_uri or tracking.user_tracking_uri() or tracking.default_tracking_uri(output)
    runs = sweep_runs(uri, args.sweep)
    only = tuple(args.benchmarks.split(",")) if args.benchmarks else None
    lines = backfill(uri, output, runs, args.data_root and str(Path(args.data_root).expanduser()), only)
    print("\n".join(lines) if lines else f"sweep {args.sweep}: every finished run already has every benchmark "
          "set present under its data root; nothing to evaluate")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a sweep's finished runs on benchmark sets they lack (no training)",
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--sweep", required=True, help="sweep name (its parent runs' srprior.sweep_id)")
    p.add_argument("--benchmarks", help=f"comma-separated subset of {','.join(contracts.BENCHMARKS)} (default: "
                                        "every set present)")
    p.add_argument("--data-root", help="benchmark root to evaluate on (default: each run's own data_root)")
    p.add_argument("--output-dir", help="the sweep's output folder (store and checkpoints; default: outputs)")
    p.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else the output's)")
    p.set_defaults(func=run)
