"""Trial leases (srprior.locks.trial_leases): one trainer per trial key, whichever sweep asks; real processes
hold them and die."""

from __future__ import annotations

import subprocess
import sys
import time

from srprior import locks

HOLD = """
import sys, time
from srprior import locks
with locks.trial_leases(sys.argv[1], sys.argv[2:], "sweep-a", lambda holder: None):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_held_lease_is_waited_for_and_a_dead_holders_lease_is_free(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "TRIAL_LEASE_POLL_S", 0.1)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "k2", "k1"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        seen: list[str] = []
        with locks.trial_leases(tmp_path, ["k0"], "sweep-b", seen.append):  # another key: no wait
            pass
        assert seen == []

        def never(line: str) -> None:
            raise AssertionError(f"k0 is held by {line}")

        def kill_holder(line: str) -> None:  # the holder dies while we wait: the kernel frees its leases
            seen.append(line)
            with locks.trial_leases(tmp_path, ["k0"], "sweep-c", never):  # all or none: a waiter holds nothing
                pass
            holder.kill()

        started = time.monotonic()
        with locks.trial_leases(tmp_path, ["k1", "k0"], "sweep-b", kill_holder):
            assert (tmp_path / "leases" / "k1.lock").read_text().startswith("sweep-b (pid ")
        assert seen == [f"sweep-a (pid {holder.pid})"] and time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
