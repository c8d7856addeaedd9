"""A sweep that stops, for whatever reason, says how to resume and leaves no run it owned RUNNING.

SIGTERM is what `timeout`, a batch scheduler at its time limit and `kill` send. Ray's driver handles it with a
native stack dump (`*** SIGTERM received … PC: @ …`) and dies, leaving the sweep's runs RUNNING. `SignalStop`
replaces that handler (after `ray.init`, which installs Ray's): while Tune runs it asks Tune to stop as Ctrl-C
does (Tune's SIGUSR1 handler: the trials stop, the experiment state is saved), at any other time it unwinds the
sweep like Ctrl-C; either way the sweep prints INCOMPLETE with the resume command. Then, whatever stopped it (a
signal, the watchdog, an error, trials left unfinished), `mark_owned_runs` ends the runs this sweep owns that are
still RUNNING as KILLED with the reason, once Ray is down (no trainer left to write to them); with the tracking
server dead it writes to the store behind it.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from srprior import contracts, tracking
from srprior.locks import sweep_alive


class SignalStop:
    """While the block runs, SIGTERM stops the sweep gracefully; `reason` says it happened (None until then)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.tuning = False  # set around Tuner.fit(): Tune's own stop handler is installed then
        self._previous: Any = None

    def install(self) -> None:
        """(Re)install the handler: call again after ray.init, which installs Ray's native one. Only the main
        thread can (a sweep run from another thread keeps the process's handler)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.reason = f"stopped by {signal.Signals(signum).name}"
        tune = signal.getsignal(signal.SIGUSR1)
        if self.tuning and callable(tune):
            tune(signum, frame)  # Tune ends the experiment at its next step and returns the results
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> SignalStop:
        self._previous = signal.getsignal(signal.SIGTERM)
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)


def mark_owned_runs(uri: str, sweep_id: str, reason: str) -> list[str]:
    """End every run of sweep `sweep_id` still RUNNING as KILLED with `reason` (srprior.failure "killed: …"):
    its trial runs (srprior.owner) and its parent runs. Returns the run ids marked."""
    client = tracking.client(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    running = " AND attributes.status = 'RUNNING'"
    trials = contracts.tag_filter({contracts.OWNER: sweep_id})
    parents = contracts.tag_filter({contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep_id})
    runs = [r for flt in (trials, parents) for r in contracts.search_all(client, exps, flt + running)]
    for run in runs:
        client.set_tag(run.info.run_id, contracts.FAILURE, f"killed: {reason} (sweep {sweep_id})")
        client.set_terminated(run.info.run_id, "KILLED")
    return [r.info.run_id for r in runs]


def mark_orphaned_runs(uri: str, runs: list, output: Path, by: str) -> list[str]:
    """Runs left RUNNING by a sweep that is no longer alive: KILLED, with the reason in srprior.failure (they are
    continued like any unfinished run). `by` is the calling sweep, which holds its lease: runs it owns are from
    an earlier process of the same sweep. Returns the run ids marked."""
    marked = []
    for run in runs:
        owner = run.data.tags.get(contracts.OWNER) or run.data.tags.get(contracts.SWEEP_ID)
        if run.info.status != "RUNNING" or not owner or (owner != by and sweep_alive(output, owner) is not False):
            continue
        client = tracking.client(uri)
        client.set_tag(run.info.run_id, contracts.FAILURE,
                       f"killed: sweep {owner} ended while the run was RUNNING (marked by sweep {by})")
        client.set_terminated(run.info.run_id, "KILLED")
        marked.append(run.info.run_id)
    return marked
