"""Fault injection against real sweeps: a local Ray (2 CPUs) bound to loopback, a two-node Ray cluster on one host,
real MLflow servers over SQLite in tmp dirs. Micro models, few steps; every wait is bounded.

- a local sweep listens on 127.0.0.0/8 only, and its diverging trial ends FAILED without a retry;
- killing the tracking server mid-sweep ends the sweep within a minute with the resume command, and `--resume`
  finishes it with one run per (config, seed);
- three sweeps started at once in a fresh folder, through a cluster whose head's address (127.0.0.2) MLflow's
  default host check refuses, all finish into one intact store, logged through tracking servers that answer 401
  to a request without the cluster's credentials; a multi-node sweep on local storage is refused.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from srprior import contracts, tracking  # noqa: E402
from srprior.sweep import launch  # noqa: E402
from srprior.sweep.run import run_sweep  # noqa: E402
from srprior.options import SweepOptions

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ROWS = ("edsr-t-micro/baseline", "edsr-t-micro/lambda-1e-4")


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        out.add(pid)
        todo += children.get(pid, [])
    return out


def _listeners(root: int) -> dict[str, str]:
    """Listening TCP sockets (address:port -> process name) of `root` and its descendants, from `ss -ltnp`."""
    pids = _descendants(root)
    out = {}
    for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        users = fields[-1]
        if any(f"pid={pid}," in users for pid in pids):
            out[fields[3]] = users.split('"')[1] if '"' in users else users
    return out


def _host(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = address.rsplit(":", 1)[0].strip("[]")
    ip = ipaddress.ip_address("0.0.0.0" if host == "*" else host)
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def _trial_runs(uri: str) -> list:
    client = tracking.client(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    return contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "trial"}))


@pytest.fixture(scope="class")
def local_ray():
    """One local Ray (as a sweep starts it: loopback only) for the tests of a class, gone before the cluster's."""
    launch.start_local_ray(2)
    yield
    ray.shutdown()


def _opts(tmp: Path, **extra) -> dict:
    """In-process sweeps: verbose (Tune pickles the progress bar's stream, which pytest's capture cannot)."""
    return {"table": "smoke", "budget": "smoke", "seeds": 1, "steps": 20, "output_dir": str(tmp), "address": None,
            "verbose": True, **extra}


def _running_trials(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute("SELECT count(*) FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid WHERE t.key = "
                                "'srprior.role' AND t.value = 'trial' AND r.status = 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError as error:  # the file exists before the store's tables (being created)
        if "no such table" in str(error):
            return 0
        raise


def _mlflow_server(root: int, folder: Path) -> int:
    """The pid of the MLflow server over `folder`'s store among `root`'s descendants."""
    for pid in _descendants(root):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mlflow" in cmd and b"server" in cmd and any(str(folder).encode() in c for c in cmd):
            return pid
    raise AssertionError(f"no MLflow server of {folder}")


class TestLocalSweeps:
    """A local Ray as a sweep starts it; torn down before the cluster test starts its nodes."""

    def test_local_sweep_listens_on_loopback_only_and_a_diverging_trial_fails(self, local_ray, tmp_path, capsys):
        """`ss -ltn` over the whole process tree during a local sweep (Ray's GCS, raylet, agents, workers, the MLflow
        server): nothing outside 127.0.0.0/8. The sweep's trial diverges (λ_AP = 1e39: inf loss at step 1): its run
        ends FAILED, Tune saw no error (no retry), the report says INCOMPLETE and the exit code is 1; `--resume`
        does not train it again."""
        seen: dict[str, str] = {}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                seen.update(_listeners(os.getpid()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            assert run_sweep(SweepOptions.of(_opts(tmp_path, name="nan", rows=ROWS[1], set=["lambda_ap=1e39"]))) == 1
        finally:
            done.set()
            sampler.join()
        names = set(seen.values())
        assert {"gcs_server", "raylet", "python"} <= names, seen  # the MLflow server is a python process
        outside = {a: n for a, n in seen.items() if not _host(a).is_loopback}
        assert outside == {}, f"listening outside 127.0.0.0/8: {outside}"
        token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
        assert not token.exists() or oct(token.stat().st_mode & 0o777) == "0o600"  # Ray writes it 0644
        err = capsys.readouterr().err
        assert "1 trial(s) FAILED" in err and ": step 1: non-finite loss" in err
        (run,) = _trial_runs(tracking.default_tracking_uri(tmp_path))
        assert (run.info.status, run.data.tags[contracts.FAILURE]) == ("FAILED", "step 1: non-finite loss")
        state = sorted((tmp_path / "ray" / "nan").glob("experiment_state-*.json"))[-1]
        (trial,) = json.loads(state.read_text())["trial_data"]
        assert json.loads(trial[0])["status"] == "TERMINATED" and json.loads(trial[1])["num_failures"] == 0
        md = (tmp_path / "reports" / "nan" / "table-smoke.md")
        assert not md.exists() or "INCOMPLETE" in md.read_text()  # one cell, failed: no table at all
        assert run_sweep(SweepOptions.of({"resume": "nan", "output_dir": str(tmp_path), "address": None, "verbose": True})) == 1
        out = capsys.readouterr()
        assert "not trained again (diverged before; --retrain to try)" in out.out and "to train: 0" in out.out
        assert [r.info.run_id for r in _trial_runs(tracking.default_tracking_uri(tmp_path))] == [run.info.run_id]

    def test_dead_tracking_server_ends_the_sweep_within_a_minute_and_resume_finishes(self, local_ray, tmp_path):
        """The sweep process (its own Ray, as from the command line) loses its MLflow server while a trial trains:
        it exits 1 within a minute with the reason and the resume command, its runs marked KILLED (written to the
        store behind the dead server); `--resume` continues them and ends with one FINISHED run per (config, seed),
        every curve point logged once."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        cmd = [sys.executable, str(REPO / "sweep.py"), "--table", "smoke", "--rows", ROWS[0], "--seeds", "2",
               "--name", "dead-server", "--steps", "20", "--output-dir", str(tmp_path), "--address", "local",
               "--num-cpus", "2"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while not _running_trials(tmp_path / "mlflow.db"):
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-3000:]
                time.sleep(0.5)
            os.killpg(_mlflow_server(proc.pid, tmp_path), signal.SIGKILL)  # its own session: uvicorn too
            killed_at = time.monotonic()
            err = proc.communicate(timeout=120)[1]
            ended = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, err[-3000:]
        assert ended - killed_at < 60, f"the sweep took {ended - killed_at:.0f} s to end"
        assert "srprior sweep: error: the MLflow tracking server (pid" in err and "exited with code -9" in err
        assert f"resume with: {tracking.command('sweep', '--resume', 'dead-server', '--output-dir', str(tmp_path))}" \
            in err
        # the sweep's own output has no traceback (Ray forwards its actors' logs, prefixed "(Actor pid=…)")
        assert not [line for line in err.splitlines() if "Traceback" in line and "pid=" not in line], err[-3000:]
        print(f"sweep ended {ended - killed_at:.1f} s after its tracking server was killed")
        assert _running_trials(tmp_path / "mlflow.db") == 0  # the sweep marked the runs it owned before it exited
        killed = [r for r in _trial_runs(tracking.default_tracking_uri(tmp_path)) if r.info.status == "KILLED"]
        assert killed and {r.data.tags[contracts.FAILURE].split(" (pid")[0] for r in killed} == \
            {"killed: the MLflow tracking server"}
        assert run_sweep(SweepOptions.of({"resume": "dead-server", "output_dir": str(tmp_path), "address": None,
                                "verbose": True})) == 0
        uri = tracking.default_tracking_uri(tmp_path)
        runs = _trial_runs(uri)
        assert sorted((r.data.tags["row"], r.data.tags["seed"], r.info.status) for r in runs) == \
            [(ROWS[0], "0", "FINISHED"), (ROWS[0], "1", "FINISHED")]
        client = tracking.client(uri)
        for run in runs:  # every curve point exactly once across the two sweeps
            assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [5, 10, 15, 20]
            assert contracts.FAILURE not in run.data.tags


# ---------------------------------------------------------------------------------------------- cluster
def _free_port(host: str) -> int:
    return tracking.free_port(host)


def _start_cluster(tmp: Path, env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A head on 127.0.0.2 (no CPUs: every trial runs on the other node) and a worker node on 127.0.0.3, each a
    `ray start --block` in its own session; raises when a node does not come up or dies while settling."""
    port = _free_port("127.0.0.2")
    start = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", f"--temp-dir={tmp / 'ray'}",
             "--disable-usage-stats", f"--ray-client-server-port={_free_port('127.0.0.2')}"]
    # fixed runtime-env agent ports: else the head's client server waits for the raylet's, and gives up after
    # 30 s on a loaded machine (taking the head down)
    nodes = [("head", ["--head", "--node-ip-address=127.0.0.2", f"--port={port}", "--num-cpus=0",
                       "--dashboard-host=127.0.0.2", f"--dashboard-port={_free_port('127.0.0.2')}",
                       f"--runtime-env-agent-port={_free_port('127.0.0.2')}"]),
             ("worker", [f"--address=127.0.0.2:{port}", "--node-ip-address=127.0.0.3", "--num-cpus=4",
                         f"--runtime-env-agent-port={_free_port('127.0.0.3')}"])]
    procs: list[subprocess.Popen] = []
    try:
        for name, args in nodes:
            log = tmp / f"{name}.log"
            with open(log, "w") as out:
                procs.append(subprocess.Popen(
                    [*start, *args, f"--dashboard-agent-listen-port={_free_port('127.0.0.1')}"], env=env,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + 180
            while "Ray runtime started" not in log.read_text():
                if time.monotonic() > deadline or procs[-1].poll() is not None:
                    raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(1)
        time.sleep(5)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a node died while settling:\n" + (tmp / "head.log").read_text()[-2000:])
        return f"127.0.0.2:{port}", procs
    except BaseException:
        _stop(procs)
        raise


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """The cluster of `_start_cluster` with its own token and temp dir; a second try when a loaded machine
    makes the first start fail."""
    tmp = tmp_path_factory.mktemp("cluster")
    token = tmp / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    try:
        address, procs = _start_cluster(tmp, env)
    except RuntimeError:
        tmp = tmp_path_factory.mktemp("cluster")
        address, procs = _start_cluster(tmp, env)
    try:
        yield address, env, tmp / "ray"  # both nodes' Ray temp dir
    finally:
        _stop(procs)


class _AnonymousProbe(threading.Thread):
    """While sweeps run, asks every tracking server that appears in `log` for its experiments without
    credentials; `statuses` maps each server's URL to the HTTP status it answered."""

    def __init__(self, log: Path):
        super().__init__(daemon=True)
        self.log, self.statuses, self.done = log, {}, threading.Event()

    def run(self) -> None:
        import re
        import urllib.error
        import urllib.request

        while not self.done.wait(0.5):
            text = self.log.read_text(errors="replace") if self.log.exists() else ""
            for url in set(re.findall(r"Uvicorn running on (http://[\d.]+:\d+)", text)) - set(self.statuses):
                req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", method="POST",
                                             data=b'{"max_results": 1}', headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        self.statuses[url] = resp.status
                except urllib.error.HTTPError as exc:
                    self.statuses[url] = exc.code
                except OSError:  # already stopped
                    self.statuses[url] = None


def test_three_sweeps_at_once_through_a_two_node_cluster(two_nodes, tmp_path):
    address, env, ray_temp = two_nodes
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "sweep.py"), "--table", "smoke", "--seeds", "1", "--steps", "4", "--no-di",
           "--address", address]
    refused = subprocess.run([*cmd, "--output-dir", str(out), "--name", "local-storage"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"srprior sweep: error: --storage {out / 'ray'} is a folder of this machine, but the cluster has 2 " \
           "nodes" in refused.stderr
    runs = {"s1": ["--rows", ROWS[0]], "s2": ["--rows", ROWS[1]], "s3": ["--rows", ROWS[0], "--set", "n_ssr=2"]}
    shared = {**env, "SRPRIOR_OUTPUT": str(out)}  # where the store, reports and checkpoints go
    probe = _AnonymousProbe(out / "mlflow-server.log")
    probe.start()
    procs = {name: subprocess.Popen([*cmd, "--shared-storage", "--name", name, *extra], env=shared,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, extra in runs.items()}
    try:
        results = {name: proc.communicate(timeout=600) for name, proc in procs.items()}
    finally:
        probe.done.set()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    # the cluster's tracking servers (basic auth, one secret per head) refused the anonymous requests, while
    # the sweeps' own runs below were logged through them by the drivers and the Train workers of both nodes
    assert probe.statuses and set(probe.statuses.values()) <= {401, None} and 401 in probe.statuses.values(), \
        probe.statuses
    assert oct((out / "tracking-auth.json").stat().st_mode & 0o777) == "0o600"
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{results[name][1][-3000:]}"
        assert f"ui --output-dir {out}" in results[name][0]  # the UI hint points at SRPRIOR_OUTPUT
        assert (out / "reports" / name / "table-smoke.md").is_file()
    db = out / "mlflow.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    trial_runs = _trial_runs(tracking.default_tracking_uri(out))
    assert sorted((r.data.tags[contracts.SWEEP_ID], r.data.tags["row"], r.info.status) for r in trial_runs) == \
        [("s1", ROWS[0], "FINISHED"), ("s2", ROWS[1], "FINISHED"), ("s3", ROWS[0], "FINISHED")]
    assert all(f"{contracts.SELECTED}psnr_embedded" in r.data.metrics for r in trial_runs)
    # the secret reached the workers of both nodes through a 0600 file whose path alone was in Ray's runtime env
    # (whose agent logs it): no other file under the nodes' Ray temp dir or the output folder holds it
    secret = json.loads((out / "tracking-auth.json").read_text())["password"].encode()
    holders = [p for root in (ray_temp, out) for p in root.rglob("*")
               if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]
    assert holders == [out / "tracking-auth.json"], holders
    agent_logs = list(ray_temp.glob("session_*/logs/runtime_env_agent*.log"))
    assert agent_logs and any(b"SRPRIOR_TRACKING_AUTH_FILE" in p.read_bytes() for p in agent_logs)
