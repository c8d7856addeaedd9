"""Watching what a running sweep cannot do without: its tracking server and free disk space.

Trials write through the MLflow server. When it dies, every MLflow call of every trial retries with backoff for
minutes, the sweep ends in a raw traceback and the runs stay RUNNING. So while Tune runs, a thread polls the
server's process and `/health` every POLL_S seconds, and the free space of the sweep's folders; on the server's
death (its process exited, or `/health` unanswered for UNHEALTHY_S), a disk below srprior.preflight's minimum, a
disk that cannot take PROBE_BYTES more or has less free than the largest checkpoint a trial reported
(contracts.CHECKPOINT_BYTES: the next one would not fit; both even with the minimum off: SRPRIOR_MIN_FREE_MB=0),
or a trial that hit a full disk (a result with contracts.STOP_SWEEP, srprior.trainers.health) it records one line, and
`StopOnFailure`, a Tune stopper, ends the experiment at Tune's next step (a fraction of a
second): the sweep prints the line and the resume command and exits 1, well within a minute, after marking
its runs KILLED (srprior.stopping; behind a dead server it writes to the store directly).

A dead GCS (Ray's control process: its address refuses connections for GCS_DEAD_S) is different: Tune cannot
stop its trials without it, and Ray ends the driver about 60 s later with no word. So the watchdog hands that
reason to `on_fatal` (the sweep prints it with the resume command, marks its runs KILLED and exits) at once.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from ray.tune.stopper import Stopper

POLL_S = 5.0
TUNE_STATE_LOGGER = "ray.tune.execution.experiment_state"  # logs a traceback when it cannot save on a full disk
PROBE_BYTES = 64 * 1024  # written (and removed) in every watched folder at each poll: a full disk fails it
UNHEALTHY_S = 30.0
GCS_DEAD_S = 10.0
GCS_DIED = "the Ray cluster's control process died"
_RUNNING: dict[str, Watchdog] = {}  # by id: the stopper Tune pickles holds only the id


class Watchdog(threading.Thread):
    """Polls the server at `url` (and its process `proc`, when this process started it) and the free space of
    `folders`; `reason` is None while all is well, else what went wrong (one line)."""

    def __init__(self, url: str | None, proc: subprocess.Popen | None = None, log: Path | None = None,
                 folders: tuple[Path, ...] = (), gcs: str | None = None, on_fatal: Callable[[str], Any] | None = None):
        super().__init__(name="srprior-watchdog", daemon=True)
        self.url, self.proc, self.log, self.folders = url, proc, log, folders
        self.gcs, self.on_fatal = gcs, on_fatal  # the GCS address (host:port); what to do when it dies
        self._gcs_down_since: float | None = None
        self.reason: str | None = None
        self.need = 0  # bytes: the largest checkpoint reported so far (StopOnFailure)
        self._stop_event = threading.Event()
        self._unhealthy_since: float | None = None

    def check(self) -> str | None:
        """One poll: the reason to stop the sweep, or None."""
        from srprior.preflight import PreflightError, check_free_space

        if self.gcs is not None:
            now = time.monotonic()
            self._gcs_down_since = None if _listening(self.gcs) else (self._gcs_down_since or now)
            if self._gcs_down_since is not None and now - self._gcs_down_since >= GCS_DEAD_S:
                return f"{GCS_DIED} (nothing answers at {self.gcs} for {GCS_DEAD_S:.0f} s)"
        if self.proc is not None and self.proc.poll() is not None:
            return f"the MLflow tracking server (pid {self.proc.pid}) exited with code {self.proc.returncode}" + \
                (f"; log {self.log}" if self.log else "")
        if self.url is not None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as resp:
                    healthy = resp.status == 200
            except OSError:
                healthy = False
            now = time.monotonic()
            self._unhealthy_since = None if healthy else (self._unhealthy_since or now)
            if self._unhealthy_since is not None and now - self._unhealthy_since >= UNHEALTHY_S:
                return f"the MLflow tracking server at {self.url} has not answered /health for {UNHEALTHY_S:.0f} s"
        try:
            check_free_space(self.folders)
        except PreflightError as exc:
            return str(exc)
        return next(filter(None, map(probe, self.folders)), None) or room(self.folders, self.need)

    def run(self) -> None:
        while not self._stop_event.wait(POLL_S):
            reason = self.check()
            if reason:
                self.reason = reason
                if reason.startswith(GCS_DIED) and self.on_fatal is not None:
                    self.on_fatal(reason)
                return

    def __enter__(self) -> Watchdog:
        _RUNNING[str(id(self))] = self
        logging.getLogger(TUNE_STATE_LOGGER).addFilter(_not_disk_full)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        _RUNNING.pop(str(id(self)), None)
        logging.getLogger(TUNE_STATE_LOGGER).removeFilter(_not_disk_full)

    def stopper(self) -> StopOnFailure:
        return StopOnFailure(str(id(self)))


class StopOnFailure(Stopper):
    """Ends the whole Tune experiment once the watchdog `key` has a reason (checked at every Tune step)."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, trial_id: str, result: dict) -> bool:
        from srprior import contracts

        watchdog = _RUNNING.get(self.key)
        if watchdog is not None and result.get(contracts.CHECKPOINT_BYTES):
            watchdog.need = max(watchdog.need, int(result[contracts.CHECKPOINT_BYTES]))
        if result.get(contracts.STOP_SWEEP) and watchdog is not None and watchdog.reason is None:
            watchdog.reason = f"{result[contracts.STOP_SWEEP]} (in trial {trial_id})"
        return False

    def stop_all(self) -> bool:
        watchdog = _RUNNING.get(self.key)
        return watchdog is not None and watchdog.reason is not None


def probe(folder: Path) -> str | None:
    """'disk full: …' when `folder` (an existing one) cannot take PROBE_BYTES more, else None."""
    import errno
    import os

    if not Path(folder).is_dir():
        return None
    path = Path(folder) / f".srprior-probe-{os.getpid()}"
    try:
        with open(path, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            return None
        return f"disk full: {folder}: {exc.strerror}"
    finally:
        path.unlink(missing_ok=True)
    return None


def _listening(address: str) -> bool:
    """Whether something accepts a TCP connection at `address` (host:port)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            return True
    except OSError:
        return False


def room(folders: tuple[Path, ...], need: int) -> str | None:
    """'disk full: …' when a folder has less free space than `need` (the next checkpoint), else None."""
    import shutil

    for folder in folders:
        if need and Path(folder).is_dir() and (free := shutil.disk_usage(folder).free) < need:
            return (f"disk full: {folder} has {free / 2**20:.2f} MiB free, less than a checkpoint needs "
                    f"({need / 2**20:.2f} MiB)")
    return None


def _not_disk_full(record: logging.LogRecord) -> bool:
    """Drop Tune's traceback for an experiment state it could not save on a full disk: the sweep's one line says
    the disk is full (a logging filter)."""
    from srprior.trainers.health import disk_full

    return not (record.exc_info and disk_full(record.exc_info[1]))
