"""File locks (`fcntl.flock` on a kept file, mode 0600), sweep leases and trial leases.

Three uses: exactly one process creates or migrates the SQLite store (srprior.store); every running sweep holds a
lease `<output>/sweeps/<sweep id>.lock` for its lifetime, so the next sweep can tell a run left RUNNING by a dead
sweep (lease free: the kernel drops a flock when its process dies, even by SIGKILL) from one that a live sweep is
still training (lease held); and every Ray Train run holds a lease per trial key beside the Train folders
(`<storage>/train/leases/<key>.lock`, `trial_leases`), so two sweeps never train the same trial at once. flock is
per host (and per NFS server for shared storage): a sweep sees the leases of sweeps of the same output folder on
the same machine (on a cluster they all run on the head).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from srprior.errors import UserError


class LeaseError(UserError, RuntimeError):
    """Another process runs this sweep (holds its lease)."""


TRIAL_LEASE_POLL_S = 2.0
TRIAL_LEASE_WAIT_S = 7 * 24 * 3600.0  # a thesis trial trains for hours; a week is a holder that never ends


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
    path = lease_path(output, sweep_id)
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LeaseError(f"sweep {sweep_id!r} is running in another process (lease {path}); wait for it, or "
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


def _try_lock(path: Path, holder: str) -> int | None:
    """The descriptor of `path` locked and stamped with `holder`, or None when another process holds it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, holder.encode())
    return fd


@contextlib.contextmanager
def trial_leases(folder: str | os.PathLike, names: list[str], holder: str,
                 on_wait: Callable[[str], None]) -> Iterator[bool]:
    """Hold `<folder>/leases/<name>.lock` for every name (one trainer per trial, whichever sweep asks); yields
    whether it had to wait. While another process holds one, `on_wait(its holder line)` is called once and the
    leases are retried every TRIAL_LEASE_POLL_S (all or none: no two waiters deadlock); a dead holder's lease is
    free at once (the kernel drops the flock)."""
    paths = [Path(folder) / "leases" / f"{name}.lock" for name in sorted(set(names))]
    deadline, waited, fds = time.monotonic() + TRIAL_LEASE_WAIT_S, False, []
    try:
        while True:
            for path in paths:
                fd = _try_lock(path, f"{holder} (pid {os.getpid()})\n")
                if fd is None:
                    break
                fds.append(fd)
            else:
                break
            for fd in fds:
                os.close(fd)
            fds = []
            if not waited:
                on_wait(path.read_text().strip() or "another process")
                waited = True
            if time.monotonic() > deadline:
                raise TimeoutError(f"trial lease {path} still held after {TRIAL_LEASE_WAIT_S:.0f} s")
            time.sleep(TRIAL_LEASE_POLL_S)
        yield waited
    finally:
        for fd in fds:
            os.close(fd)
