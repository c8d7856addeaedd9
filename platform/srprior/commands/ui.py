"""`srprior ui`: the MLflow UI on this project's store (127.0.0.1 unless told), with a link to the newest
experiment's runs view (srprior.tracking saves it); a cluster's store asks for its credentials."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from srprior import credentials
from srprior.errors import int_in
from srprior.store import StoreError
from srprior.tracking import (LOOPBACK, TrackingServer, artifacts_dir, command, default_tracking_uri, is_remote,
                              newest_experiment, output_dir, store_exists, ui_url, user_tracking_uri)

MAKE_STORE = ("sweep", "--table", "4.2", "--budget", "smoke")  # the smallest sweep: a store with one experiment


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="open the MLflow UI on this project's runs (127.0.0.1) and print its URL")
    p.add_argument("--output-dir", help="platform output folder holding mlflow.db (default: as `srprior sweep`)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=5000)
    p.set_defaults(func=run_ui)


def _print_newest(url: str, auth: Any = None) -> None:
    newest = newest_experiment(url, auth=auth)
    if newest is not None:
        print(f"Runs of {newest[1]} (newest): {ui_url(url, newest[0], newest[2])}", flush=True)


def run_ui(args: argparse.Namespace) -> int:
    uri = user_tracking_uri()
    if uri and is_remote(uri):  # a server already holds the store: nothing to start
        print(f"MLflow UI: {uri} (from MLFLOW_TRACKING_URI)", flush=True)
        if uri.startswith("http"):
            _print_newest(uri)
        return 0
    out = output_dir(args.output_dir)
    backend = uri or default_tracking_uri(out)
    if not store_exists(backend):  # the server would create an empty store and show nothing
        db = Path(backend.removeprefix("sqlite:///")).resolve()
        make = command(*MAKE_STORE) if uri or out == output_dir(None) else \
            command(*MAKE_STORE, "--output-dir", str(out))
        raise StoreError(f"no MLflow store at {db} (srprior ui looks in $MLFLOW_TRACKING_URI when set, else in "
                         f"<--output-dir>/mlflow.db, default ./outputs/mlflow.db); make one: {make}")
    # the head of a cluster (its sweeps made credentials), or a UI reachable from elsewhere: the browser logs in
    auth = credentials.ensure(out) if (out / credentials.FILE).is_file() or args.host not in LOOPBACK else None
    server = TrackingServer(backend, artifacts_dir(out), args.host, args.port, log=out / "mlflow-ui.log", auth=auth)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"srprior ui: error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"MLflow UI: {server.url}  (store {server.backend_uri}; Ctrl-C to stop)", flush=True)
        if auth is not None:
            print(f"Log in as {auth.username} with the password in {auth.file}", flush=True)
        _print_newest(server.url, auth)
        server.proc.wait()
        print(f"srprior ui: the MLflow server exited with code {server.proc.returncode}; log {server.log}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
