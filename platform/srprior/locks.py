"""File locks (`fcntl.flock` on a kept file, mode 0600) and sweep leases.

Two uses: exactly one process creates or migrates the SQLite store (srprior.store), and every running sweep
holds a lease `<output>/sweeps/<sweep id>.lock` for its lifetime, so the next sweep can tell a run left RUNNING by a
dead sweep (lease free: the kernel drops a flock when its process dies, even by SIGKILL) from one that a live sweep
is still training (lease held). flock is per host: a sweep sees the leases of sweeps of the same output folder on
the same machine (on a cluster they all run on the head).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float, what: str = "lock") -> Iterator[None]:
    """Hold an exclusive lock on `path` (waiting up to `timeout` s, then TimeoutError naming `what`)."""
    fd = _open(Path(path))
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what}: {path} is still locked after {timeout:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def lease_path(output: Path, sweep_id: str) -> Path:
    return Path(output) / "sweeps" / f"{sweep_id}.lock"


@contextlib.contextmanager
def sweep_lease(output: Path, sweep_id: str) -> Iterator[None]:
    """Mark sweep `sweep_id` alive while the block runs; a second process running the same sweep is refused."""
    from srprior.trainers.resources import SweepError

    path = lease_path(output, sweep_id)
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"sweep {sweep_id!r} is running in another process (lease {path}); wait for it, or "
                             "give this one another --name") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def sweep_alive(output: Path, sweep_id: str) -> bool | None:
    """True while a process holds the sweep's lease, False when it ended (or died), None when this output folder
    never ran it (unknown: another machine or output folder)."""
    path = lease_path(output, sweep_id)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def mark_orphaned_runs(uri: str, runs: list, output: Path, by: str) -> list[str]:
    """Runs left RUNNING by a sweep that is no longer alive: KILLED, with the reason in srprior.failure (they are
    continued like any unfinished run). `by` is the calling sweep, which holds its lease: runs it owns are from
    an earlier process of the same sweep. Returns the run ids marked."""
    from srprior import contracts, tracking

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
