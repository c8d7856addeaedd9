"""`srprior report`: rebuild a thesis table (or a search) from a sweep's MLflow runs, next to the numbers the
thesis printed: Markdown (printed), CSV and HTML files logged to the sweep's parent run (srprior.report)."""

from __future__ import annotations

import argparse
import sys

from srprior import tracking
from srprior.errors import int_in
from srprior.preflight import check_tracking_uri
from srprior.report.cells import budget_plan, resolve_tracking_uri, sweep_cells
from srprior.report.model import ARTIFACT_DIR, ReportError, build_report
from srprior.report.render import to_markdown
from srprior.report.search import search_report
from srprior.report.write import write_report
from srprior.search_spaces import get_table

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a thesis table (or a search) from MLflow runs: Markdown, CSV, HTML")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--table", help="thesis table, e.g. 4.2 (4.2-4.8, smoke)")
    what.add_argument("--search", help="Optuna search name (edsr-t, rnan-t, smoke)")
    p.add_argument("--sweep", default="latest", help="sweep id, or 'latest' (default): the newest sweep of it")
    p.add_argument("--replan", action="store_true",
                   help="rebuild the sweep's plan from its stored options with today's code instead of reading the "
                        "cells it recorded (sweeps made before srprior recorded them)")
    p.add_argument("--budget", help="instead of a sweep: the runs this budget's plan uses (smoke, short, thesis)")
    p.add_argument("--seeds", type=int_in(1, 1000), help="with --budget: seeds per row")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --budget: science overrides")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI, else the store under --output-dir)")
    p.add_argument("--output-dir", help="platform output folder holding the default store (default: as `srprior "
                                        "sweep`)")
    p.add_argument("--claims-correction", choices=("holm", "bh"), default="holm",
                   help="multiplicity correction of the claims' p over a table: holm (family-wise error, default) "
                        "or bh (Benjamini–Hochberg, false discovery rate)")
    p.add_argument("--out", default=None,
                   help="folder for the report files (default: <output-dir>/reports/<sweep id or budget>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        tracking_uri = resolve_tracking_uri(args.tracking_uri, args.output_dir)
        check_tracking_uri(tracking_uri)  # a bad or unreachable URI: one line within seconds, not MLflow's retries
        if args.search:
            report = search_report(args.search, tracking_uri, args.sweep)
        else:
            spec = get_table(args.table)
            if args.budget:
                (cells, readings), sweep, parent = budget_plan(spec.name, args.budget, args.seeds, args.set), None, None
            else:
                cells, sweep, parent, readings = sweep_cells(spec.name, tracking_uri, args.sweep, args.replan)
            report = build_report(spec, tracking_uri, cells, sweep, parent, readings, args.claims_correction,
                                  budget=args.budget)
    except KeyError as exc:  # an unknown table name (search_spaces.get_table): a user error like the others
        raise ReportError(exc.args[0] if exc.args else str(exc)) from None
    folder = report.sweep_id or (f"budget-{args.budget}" if args.budget else "search")
    paths = write_report(report, args.out or tracking.output_dir(args.output_dir) / "reports" / folder)
    print(to_markdown(report))
    where = f"logged to run {report.parent_run_id} under {ARTIFACT_DIR}/" if report.parent_run_id else \
        "no sweep parent run to log them to"
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({where})", file=sys.stderr)
    return 0
