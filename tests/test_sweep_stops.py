"""Sweeps that stop and resume, as from the command line (each sweep its own process with its own local Ray on 2
CPUs): SIGTERM ends a sweep with the INCOMPLETE summary and KILLED runs, and after its newest checkpoint rots
the printed resume command finishes it from the previous one; two sweeps of one table on one folder train
each trial once; a full output disk ends a sweep within a minute. Micro models; every wait is bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from srprior import contracts, tracking  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ROWS = "edsr-t-micro/baseline,edsr-t-micro/lambda-1e-4"
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of a run's kept checkpoints


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _sweep(out: Path, name: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "sweep.py"), "--table", "smoke", "--rows", ROWS, "--seeds", "2", "--no-di",
           "--name", name, "--output-dir", str(out), "--address", "local", "--num-cpus", "2", *extra]
    return subprocess.Popen(cmd, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _snapshots(out: Path) -> dict[Path, dict]:
    """Train folder -> its checkpoint snapshot (those written completely so far)."""
    found = {}
    for path in (out / "ray" / "train").glob(f"train-*/{SNAPSHOT}"):
        try:
            found[path.parent] = json.loads(path.read_text())
        except (OSError, ValueError):  # being rewritten
            continue
    return found


def _wait_for_checkpoints(proc: subprocess.Popen, out: Path, n: int, timeout: float = 480) -> None:
    deadline = time.monotonic() + timeout
    while not any(len(s["checkpoint_results"]) >= n for s in _snapshots(out).values()):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"no Train run with {n} checkpoints:\n{proc.communicate()[1][-3000:]}")
        time.sleep(0.2)


def _kill_tree(root: int) -> None:
    """SIGKILL the sweep and every descendant (Ray's GCS, raylet and workers, the MLflow server)."""
    from test_sweep_faults import _descendants

    for pid in _descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _runs(out: Path, role: str = "trial") -> list:
    client = tracking.client(tracking.default_tracking_uri(out))
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    return contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: role}))


def _no_traceback(err: str) -> None:
    # Ray forwards its actors' logs prefixed "(Actor pid=…)"; the sweep's own output must have none
    assert not [line for line in err.splitlines() if "Traceback" in line and "pid=" not in line], err[-3000:]


def _truncate_newest_checkpoints(out: Path) -> dict[str, tuple[str, str, int]]:
    """Cut the newest state.pt of every Train run holding two checkpoints in half: Train folder -> (newest,
    previous, previous step)."""
    truncated = {}
    for folder, snap in _snapshots(out).items():
        if len(snap["checkpoint_results"]) < 2:
            continue
        newest = snap["latest_checkpoint_result"]["checkpoint_dir_name"]
        (previous,) = [r for r in snap["checkpoint_results"] if r["checkpoint_dir_name"] != newest]
        state = folder / newest / "state.pt"
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
        truncated[folder.name] = (newest, previous["checkpoint_dir_name"], int(previous["metrics"]["step"]))
    return truncated


def test_sigterm_then_a_truncated_checkpoint_the_printed_resume_finishes(tmp_path):
    """SIGTERM (what `timeout` and batch schedulers send) once a Train run has two checkpoints: within 30 s the
    sweep prints INCOMPLETE with the resume command, no Ray stack dump; its trial and parent runs are KILLED with
    the reason. Then the newest checkpoint rots (cut in half): the resume command, run as printed, skips it
    (checksum), continues from the previous one (srprior.resumed_at_step, the fallback named on the run) and
    ends 4/4 FINISHED with no traceback, every curve point once. One sweep serves both stops (CI time)."""
    proc = _sweep(tmp_path, "term", "--steps", "200")
    try:
        _wait_for_checkpoints(proc, tmp_path, 2)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
    print(f"the sweep ended {took:.1f} s after SIGTERM")
    assert proc.returncode == 1, err[-3000:]
    assert took < 30
    assert "SIGTERM received" not in out + err and "PC: @" not in err
    _no_traceback(err)
    line = next(x for x in out.splitlines() if x.startswith("INCOMPLETE: stopped by SIGTERM"))
    command = re.search(r"resume with: (.*)$", line).group(1)
    assert command == tracking.command("sweep", "--resume", "term", "--output-dir", str(tmp_path))
    trials, (parent,) = _runs(tmp_path), _runs(tmp_path, "sweep")
    assert trials and {r.info.status for r in trials + [parent]} == {"KILLED"}
    assert {r.data.tags[contracts.FAILURE] for r in trials} == {"killed: stopped by SIGTERM (sweep term)"}
    truncated = _truncate_newest_checkpoints(tmp_path)
    assert truncated
    resumed = subprocess.run(command, shell=True, cwd=os.getcwd(), env=_env(), capture_output=True, text=True,
                             timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _no_traceback(resumed.stderr)
    runs = _runs(tmp_path)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    fallbacks = sorted(r.data.tags.get(contracts.CHECKPOINT_FALLBACK, "") for r in runs)
    for newest, previous, step in truncated.values():
        ours = [r for r in runs if newest in r.data.tags.get(contracts.CHECKPOINT_FALLBACK, "")]
        assert ours, fallbacks
        for run in ours:
            assert f"resumed from {previous} (step {step})" in run.data.tags[contracts.CHECKPOINT_FALLBACK]
            assert run.data.tags[contracts.RESUMED_AT] == str(step)
    client = tracking.client(tracking.default_tracking_uri(tmp_path))
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert steps == list(range(5, 201, 5))


def test_two_sweeps_of_one_table_on_one_folder_train_each_trial_once(tmp_path):
    """The second sweep of the same table starts while the first trains: it waits for the trials' leases (its
    progress line says so), then reuses the runs the first finished. Both exit 0 with complete reports; every
    run is FINISHED once (one set of final metrics, every curve point once) and carries the first sweep's tags."""
    first = _sweep(tmp_path, "s1", "--steps", "800")  # long enough for the second to start while it trains
    second = None
    try:
        _wait_for_checkpoints(first, tmp_path, 1)
        second = _sweep(tmp_path, "s2", "--steps", "800")
        outs = {name: proc.communicate(timeout=1200) for name, proc in (("s1", first), ("s2", second))}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                _kill_tree(proc.pid)
    for name, proc in (("s1", first), ("s2", second)):
        assert proc.returncode == 0, f"{name}:\n{outs[name][1][-3000:]}"
        _no_traceback(outs[name][1])
        assert "INCOMPLETE" not in (tmp_path / "reports" / name / "table-smoke.md").read_text()
    print(outs["s2"][1][-600:])
    runs = _runs(tmp_path)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert {(r.data.tags[contracts.SWEEP_ID], r.data.tags[contracts.OWNER]) for r in runs} == {("s1", "s1")}
    assert all(contracts.FAILURE not in r.data.tags for r in runs)
    client = tracking.client(tracking.default_tracking_uri(tmp_path))
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, f"{contracts.SELECTED}psnr_embedded")) == 1
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(5, 801, 5))
    assert "waiting for another sweep training them" in outs["s2"][1]


def test_a_full_output_disk_ends_the_sweep_within_a_minute_with_the_guard_off(tmp_path):
    """The output folder (store, artifacts, checkpoints) on a 64 MiB tmpfs and the free-space guard off
    (SRPRIOR_MIN_FREE_MB=0): once trials train, the disk is filled to the last page. The sweep exits 1 within
    60 s with one line naming the full disk and the resume command, and no traceback."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    proc = None
    try:
        proc = _sweep(disk, "full", "--steps", "1500", env={**_env(), "SRPRIOR_MIN_FREE_MB": "0"})
        _wait_for_checkpoints(proc, disk, 1)
        with open(disk / "filler", "wb", buffering=0) as f:
            for size in [2**20] * 80 + [4096] * 300:  # at most 80 MiB + 1.2 MiB: more than the disk holds
                try:
                    f.write(b"\0" * size)
                except OSError:
                    continue
        filled = time.monotonic()
        out, err = proc.communicate(timeout=300)
        took = time.monotonic() - filled
    finally:
        if proc is not None and proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
        subprocess.run(["umount", "-l", str(disk)], check=True)
    print(f"the sweep ended {took:.1f} s after its output disk filled")
    assert proc.returncode == 1, err[-3000:]
    assert took < 60
    _no_traceback(err)
    (line,) = [x for x in err.splitlines() if x.startswith("srprior sweep:")]
    assert line.startswith("srprior sweep: error: disk full: ") and "No space left on device" in line, line
    assert line.endswith(f"; the sweep stopped, resume with: "
                         f"{tracking.command('sweep', '--resume', 'full', '--output-dir', str(disk))}")


def test_a_disk_too_small_for_the_next_checkpoint_stops_the_sweep_and_the_resume_finishes(tmp_path):
    """The issue's repro: the output folder on a 3 MiB tmpfs, the guard off, after the first checkpoint less room
    than the next needs. A checkpoint upload meets the full disk (a report that used to wait forever in Ray Train),
    or the watchdog sees it coming: the sweep ends by itself within 4 minutes of its first checkpoint with one line
    naming the disk and the resume command, no traceback. After the disk grows to 64 MiB (remount: nothing lost)
    the printed resume finishes: one FINISHED run per key."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    out, proc = disk / "outputs", None
    try:
        proc = _sweep(out, "small", "--steps", "300", "--set", "val_every=50",
                      env={**_env(), "SRPRIOR_MIN_FREE_MB": "0"})
        started = time.monotonic()
        _wait_for_checkpoints(proc, out, 1)  # start-up alone took 165 s at a load of 49 on 2 cores
        training = time.monotonic()
        # whether 300 steps fill 3 MiB varies from run to run: leave half a checkpoint free (more than the old
        # 64 KiB probe needed), so that the next checkpoint cannot be kept
        need = max(p.stat().st_size for p in (out / "ray" / "train").glob("*/checkpoint_*/state.pt"))
        with open(disk / "filler", "wb", buffering=0) as f:
            while (free := shutil.disk_usage(disk).free) > need // 2 + 4096:
                try:
                    f.write(b"\0" * min(65536, free - need // 2))
                except OSError:  # the sweep filled it meanwhile
                    break
        _, err = proc.communicate(timeout=240)
        print(f"the sweep on a 3 MiB disk ended by itself {time.monotonic() - started:.1f} s after it started, "
              f"{time.monotonic() - training:.1f} s after its first checkpoint")
        assert proc.returncode == 1, err[-3000:]
        _no_traceback(err)
        (line,) = [x for x in err.splitlines() if x.startswith("srprior sweep:")]
        print(line)
        command = tracking.command("sweep", "--resume", "small", "--output-dir", str(out))
        assert line.startswith("srprior sweep: error: disk full: ") and line.endswith(f"resume with: {command}")
        assert str(disk) in line, line
        (disk / "filler").unlink()
        for snapshot in (out / "ray" / "train").glob(f"train-*/{SNAPSHOT}"):
            snapshot.write_text("")  # as a full disk left it on one run: Train rewrites it in place
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = subprocess.run(command, shell=True, env={**_env(), "SRPRIOR_MIN_FREE_MB": "0"},
                                 capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _no_traceback(resumed.stderr)
        runs = _runs(out)
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
        assert len({r.data.tags[contracts.RUN_KEY] for r in runs}) == 4
        assert any(int(r.data.tags.get(contracts.RESUMED_AT, "0")) > 0 for r in runs)  # from a checkpoint
    finally:
        if proc is not None and proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_dead_gcs_stops_the_sweep_with_one_line_and_its_runs_killed(tmp_path):
    """Ray's GCS killed mid-sweep (Ray would end the driver about 60 s later without a word): the sweep prints
    one line naming the Ray cluster's control process and the resume command, no traceback, within 60 s, and
    its runs are KILLED now (its tracking server outlives the GCS)."""
    from test_sweep_faults import _descendants

    proc = _sweep(tmp_path, "gcs", "--steps", "400")
    try:
        _wait_for_checkpoints(proc, tmp_path, 1)
        gcs = [p for p in _descendants(proc.pid) if "gcs_server" in Path(f"/proc/{p}/cmdline").read_bytes().decode()]
        os.kill(gcs[0], signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        _kill_tree(proc.pid)
    print(f"the sweep ended {took:.1f} s after its GCS was killed")
    assert proc.returncode == 1 and took < 60, err[-3000:]
    _no_traceback(err)
    (line,) = [x for x in err.splitlines() if x.startswith("srprior sweep:")]
    assert line.startswith("srprior sweep: error: the Ray cluster's control process died (nothing answers at 127.")
    assert line.endswith(f"resume with: {tracking.command('sweep', '--resume', 'gcs', '--output-dir', str(tmp_path))}")
    runs = _runs(tmp_path) + _runs(tmp_path, "sweep")
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.info.status, r.data.tags.get("row")) for r in runs]
    reason = line[len("srprior sweep: error: "):line.index("; the sweep stopped")]
    assert {r.data.tags[contracts.FAILURE] for r in _runs(tmp_path)} == {f"killed: {reason} (sweep gcs)"}
