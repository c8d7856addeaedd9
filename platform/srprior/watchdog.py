"""Watching what a running sweep cannot do without: its tracking server and free disk space.

Trials write through the MLflow server. When it dies, every MLflow call of every trial retries with backoff for
minutes, the sweep ends in a raw traceback and the runs stay RUNNING. So while Tune runs, a thread polls the
server's process and `/health` every POLL_S seconds, and the free space of the sweep's folders; on the server's
death (its process exited, or `/health` unanswered for UNHEALTHY_S) or a disk below srprior.preflight's minimum it
records one line, and `StopOnFailure`, a Tune stopper, ends the experiment at Tune's next step (a fraction of a
second): the sweep prints the line and the resume command and exits 1, well within a minute, after marking
its runs KILLED (srprior.stopping; behind a dead server it writes to the store directly).
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from ray.tune.stopper import Stopper

POLL_S = 5.0
UNHEALTHY_S = 30.0
_RUNNING: dict[str, Watchdog] = {}  # by id: the stopper Tune pickles holds only the id


class Watchdog(threading.Thread):
    """Polls the server at `url` (and its process `proc`, when this process started it) and the free space of
    `folders`; `reason` is None while all is well, else what went wrong (one line)."""

    def __init__(self, url: str | None, proc: subprocess.Popen | None = None, log: Path | None = None,
                 folders: tuple[Path, ...] = ()):
        super().__init__(name="srprior-watchdog", daemon=True)
        self.url, self.proc, self.log, self.folders = url, proc, log, folders
        self.reason: str | None = None
        self._stop_event = threading.Event()
        self._unhealthy_since: float | None = None

    def check(self) -> str | None:
        """One poll: the reason to stop the sweep, or None."""
        from srprior.preflight import PreflightError, check_free_space

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
        return None

    def run(self) -> None:
        while not self._stop_event.wait(POLL_S):
            reason = self.check()
            if reason:
                self.reason = reason
                return

    def __enter__(self) -> Watchdog:
        _RUNNING[str(id(self))] = self
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        _RUNNING.pop(str(id(self)), None)

    def stopper(self) -> StopOnFailure:
        return StopOnFailure(str(id(self)))


class StopOnFailure(Stopper):
    """Ends the whole Tune experiment once the watchdog `key` has a reason (checked at every Tune step)."""

    def __init__(self, key: str):
        self.key = key

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        watchdog = _RUNNING.get(self.key)
        return watchdog is not None and watchdog.reason is not None
