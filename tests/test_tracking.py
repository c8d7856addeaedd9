"""MLflow plumbing against real stores: SQLite files in tmp dirs and real `mlflow server` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from srprior import tracking

WRITER = """
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(sys.argv[1])
for i in range(int(sys.argv[4])):
    client.log_metric(sys.argv[2], sys.argv[3], float(i), step=i)
"""


def test_default_store_is_absolute_and_user_uri_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.default_tracking_uri("out") == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    assert tracking.default_tracking_uri(None) == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert tracking.ui_command("out") == tracking.command("ui", "--output-dir", str(tmp_path / "out"))
    assert tracking.ui_command(None) == tracking.command("ui")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.user_tracking_uri() == "http://mlflow.example:5000"
    assert tracking.ui_command("out") == "http://mlflow.example:5000"


def test_experiment_description_is_set_once_and_never_overwritten(tmp_path):
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))

    def note(exp: str) -> str | None:
        return client.get_experiment(exp).tags.get("mlflow.note.content")

    exp = tracking.experiment_id(client, "srprior/table-4.2", description="Table 4.2: the prior on EDSR-T")
    assert note(exp) == "Table 4.2: the prior on EDSR-T"  # what the UI shows as the description
    plain = tracking.experiment_id(client, "srprior/search-edsr-t")
    assert note(plain) is None
    assert tracking.experiment_id(client, "srprior/search-edsr-t", description="Optuna TPE") == plain
    assert note(plain) == "Optuna TPE"  # an existing experiment without one gets it
    client.set_experiment_tag(exp, "mlflow.note.content", "edited in the UI")
    assert tracking.experiment_id(client, "srprior/table-4.2", description="Table 4.2: the prior on EDSR-T") == exp
    assert note(exp) == "edited in the UI"


def test_ui_url_opens_the_training_runs_view():
    assert tracking.ui_url("http://127.0.0.1:5000/", "7") == \
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"


def test_srprior_ui_refuses_a_missing_store_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from srprior import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli.main(["ui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line, no traceback
    assert err.startswith(f"srprior ui: error: no MLflow store at {tmp_path}/outputs/mlflow.db")
    assert "$MLFLOW_TRACKING_URI" in err and "<--output-dir>/mlflow.db" in err
    make = tracking.command("sweep", "--table", "4.2", "--budget", "smoke")  # runnable as printed, venv or not
    assert err.endswith(f"make one: {make}\n")
    assert cli.main(["ui", "--output-dir", "my runs"]) == 2
    assert capsys.readouterr().err.endswith(f"make one: {make} --output-dir '{tmp_path}/my runs'\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert cli.main(["ui"]) == 2
    assert f"no MLflow store at {tmp_path}/elsewhere.db" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no empty mlflow.db, no log, no folder


def test_get_or_create_run_by_key_and_checkpointed_id(tmp_path):
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    exp = tracking.experiment_id(client, "srprior/table-x")
    assert tracking.experiment_id(client, "srprior/table-x") == exp
    key = {"srprior.role": "trial", "srprior.sweep_id": "s1", "table": "x", "row": "r/a", "seed": "0"}
    first = tracking.get_or_create_run(client, exp, key, "r/a/seed-0")
    client.set_terminated(first, "FAILED")
    again = tracking.get_or_create_run(client, exp, key, "r/a/seed-0")
    assert again == first and client.get_run(first).info.status == "RUNNING"  # reopened, not duplicated
    other = tracking.get_or_create_run(client, exp, {**key, "seed": "1"}, "r/a/seed-1")
    assert other != first
    assert tracking.get_or_create_run(client, exp, {**key, "seed": "7"}, "x", run_id=first) == first
    client.delete_run(first)
    fresh = tracking.get_or_create_run(client, exp, key, "r/a/seed-0", run_id=first)
    assert fresh not in (first, other)
    assert [r.info.run_id for r in tracking.find_runs(client, exp, key)] == [fresh]
    with pytest.raises(ValueError, match="quotes"):
        tracking.find_runs(client, exp, {"row": "it's"})


@pytest.mark.slow
def test_server_concurrent_writers_lose_no_metric(tmp_path):
    """Six processes log to one run at once through the server: every point arrives."""
    writers, points = 6, 100
    with tracking.TrackingServer(tracking.default_tracking_uri(tmp_path), tracking.artifacts_dir(tmp_path)) as srv:
        client = MlflowClient(srv.url)
        run = client.create_run(tracking.experiment_id(client, "concurrency")).info.run_id
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, srv.url, run, f"m{i}", str(points)])
                 for i in range(writers)]
        assert [p.wait(timeout=300) for p in procs] == [0] * writers
        for i in range(writers):
            history = client.get_metric_history(run, f"m{i}")
            assert sorted(m.step for m in history) == list(range(points))
    assert srv.proc.poll() is not None  # stopped with its uvicorn worker


def _search(url: str) -> list[str]:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", method="POST",
                                 data=json.dumps({"max_results": 100}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return [e["name"] for e in json.loads(resp.read())["experiments"]]


@pytest.mark.slow
def test_srprior_ui_serves_the_store_rest_api(tmp_path):
    client = MlflowClient(tracking.default_tracking_uri(tmp_path))
    tracking.experiment_id(client, "srprior/table-4.2")
    newest = tracking.experiment_id(client, "srprior/table-4.3")
    tracking.experiment_id(client, "not-srprior")
    port = tracking.free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "srprior.cli", "ui", "--output-dir", str(tmp_path),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the server answers
        assert line.startswith(f"MLflow UI: http://127.0.0.1:{port}"), line
        url = f"http://127.0.0.1:{port}/#/experiments/{newest}/runs?workflowType=machine_learning"
        assert proc.stdout.readline() == f"Runs of srprior/table-4.3 (newest): {url}\n"
        assert "srprior/table-4.2" in _search(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with pytest.raises(OSError):
        _search(f"http://127.0.0.1:{port}")


@pytest.mark.slow
def test_busy_port_is_refused_and_a_dead_server_is_reported(tmp_path):
    busy = tracking.TrackingServer(tracking.default_tracking_uri(tmp_path), tracking.artifacts_dir(tmp_path))
    with busy:
        clash = tracking.TrackingServer(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "b", port=busy.port)
        with pytest.raises(RuntimeError, match=f"port {busy.port} on 127.0.0.1 is already in use"):
            clash.start()
    broken = tracking.TrackingServer("bogus://store", tmp_path / "c", log=tmp_path / "broken.log")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"exited with code 1; log .*broken.log:\n(.|\n)*bogus://store"):
        broken.start(timeout=120)  # unsupported store: the server dies and its log tail is shown
    assert time.monotonic() - start < 120


def test_a_slow_server_start_is_waited_for_longer_under_load_and_says_so(monkeypatch, capsys):
    """A server that never answers (a port nothing listens on): the wait notes its progress every WAIT_NOTE_S
    and ends after the timeout scaled by the load per core (here ×2, made up by patching the load)."""
    monkeypatch.setattr(tracking, "WAIT_NOTE_S", 0.5)
    monkeypatch.setattr(tracking.os, "getloadavg", lambda: (2.0 * os.cpu_count(), 0.0, 0.0))
    assert tracking.load_scaled(1.0) == 2.0
    url = f"http://127.0.0.1:{tracking.free_port()}"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"MLflow server at {url} did not answer within 2 s"):
        tracking.wait_healthy(url, 1.0)
    assert 2.0 <= time.monotonic() - start < 10
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) >= 3 and notes[0].startswith(f"srprior: waiting for the MLflow tracking server at {url} (")
    assert notes[0].endswith(f" s, load {2.0 * os.cpu_count():.1f} on {os.cpu_count()} cores; up to 2 s)")
    monkeypatch.setattr(tracking.os, "getloadavg", lambda: (100.0 * os.cpu_count(), 0.0, 0.0))
    assert tracking.load_scaled(1.0) == 4.0  # bounded


def test_printed_commands_run_as_printed_without_an_activated_venv(tmp_path, monkeypatch):
    """Hints (`srprior ui`, resume) name this installation's script when `srprior` is not on PATH."""
    import shlex

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as after `python3 -m venv .venv && .venv/bin/pip install ...`
    monkeypatch.chdir(tmp_path)
    cmd = tracking.command("ui", "--help")
    assert not cmd.startswith("srprior ")
    done = subprocess.run(shlex.split(cmd), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--output-dir" in done.stdout
