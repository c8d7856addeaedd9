"""Credentials of a cluster's tracking server (srprior.credentials): the secret on the head, and a real MLflow
basic-auth server on loopback that refuses requests without it and logs a run for a client that has it."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest

from srprior import credentials, tracking


def test_the_secret_is_generated_once_and_private(tmp_path, monkeypatch):
    out = tmp_path / "out"
    found: list[credentials.Credentials] = []
    threads = [threading.Thread(target=lambda: found.append(credentials.ensure(out))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(found) == 3 and len({c.password for c in found}) == 1  # sweeps starting at once share one secret
    creds = found[0]
    assert creds.username == "srprior" and len(creds.password) >= 40 and len(creds.secret_key) == 64
    for name in (credentials.FILE, credentials.USERS_DB, credentials.CONFIG):
        assert oct((out / name).stat().st_mode & 0o777) == "0o600", name
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert json.loads((out / credentials.FILE).read_text())["password"] == creds.password
    assert credentials.load(out) == creds and credentials.ensure(out) == creds
    assert creds.client_env() == {"MLFLOW_TRACKING_USERNAME": "srprior", "MLFLOW_TRACKING_PASSWORD": creds.password}
    with sqlite3.connect(out / credentials.USERS_DB) as conn:  # the admin exists before any server starts
        assert conn.execute("SELECT username, is_admin FROM users").fetchall() == [("srprior", 1)]
    for key in credentials.CLIENT_ENV:  # restored after the test (for_sweep sets them in os.environ)
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    storage = str(out / "ray")
    assert credentials.runtime_env(storage, out) is None
    assert credentials.for_sweep(tmp_path / "local", False, None) is None and \
        credentials.runtime_env(storage, out) is None
    assert credentials.for_sweep(out, False, "http://10.0.0.10:5000") == creds  # the head's `srprior ui` server
    # Ray's runtime env (which its agent logs) carries where the secret lies, never the secret
    assert credentials.runtime_env(storage, out) == {"env_vars": {credentials.FILE_ENV: str(creds.file)}}
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "exported")  # the user's own, for a server not ours: kept
    credentials.for_sweep(out, False, "http://10.0.0.10:5000")
    shared = tmp_path / "nfs"  # storage outside the output folder: a 0600 copy for the clients there
    env = credentials.runtime_env(str(shared), out)["env_vars"]
    assert env == {credentials.FILE_ENV: str(shared / credentials.CLIENT_FILE)} and "exported" not in str(env)
    assert oct((shared / credentials.CLIENT_FILE).stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv(credentials.FILE_ENV, env[credentials.FILE_ENV])  # a worker: what Ray hands it
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    credentials.adopt()
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("srprior", "exported")
    monkeypatch.delenv(credentials.FILE_ENV)
    assert credentials.for_sweep(out, True, None) == creds  # our own server: ours
    assert credentials.runtime_env(storage, out) == {"env_vars": {credentials.FILE_ENV: str(creds.file)}}
    (out / credentials.FILE).unlink()  # a new secret: the old admin (old password) goes with it
    assert credentials.ensure(out).password != creds.password


def _status(url: str, headers: dict[str, str] | None = None, path: str = "/api/2.0/mlflow/experiments/search",
            body: bytes | None = json.dumps({"max_results": 1}).encode()) -> int:
    req = urllib.request.Request(f"{url}{path}", data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow  # a real MLflow server (tens of seconds to start on a loaded machine)
def test_auth_server_refuses_anonymous_requests_and_logs_a_run_with_the_secret(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    creds = credentials.ensure(out)
    backend = tracking.default_tracking_uri(out)
    with tracking.TrackingServer(backend, tracking.artifacts_dir(out), log=out / "server.log", auth=creds) as server:
        assert _status(server.url) == 401
        wrong = credentials.Credentials(out, creds.username, "not-the-password", creds.secret_key)
        assert _status(server.url, wrong.header()) == 401
        assert _status(server.url, path="/", body=None) == 401  # the UI page too
        assert _status(server.url, creds.header()) == 200
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for key, value in creds.client_env().items():  # MLflow's standard client mechanism
            monkeypatch.setenv(key, value)
        client = MlflowClient(tracking_uri=server.url)
        exp = client.create_experiment("srprior/auth-test")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "psnr", 31.25, step=3)
        (tmp_path / "note.txt").write_text("through the server")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
        client.set_terminated(run.info.run_id)
        assert tracking.newest_experiment(server.url, auth=creds) == (exp, "srprior/auth-test", False)
        assert tracking.newest_experiment(server.url) is None  # the UI's REST lookup without them: refused
    with sqlite3.connect(out / "mlflow.db") as conn:  # what reached the store, read without MLflow
        assert conn.execute("SELECT key, value, step FROM metrics WHERE run_uuid = ?",
                            (run.info.run_id,)).fetchall() == [("psnr", 31.25, 3)]
        assert conn.execute("SELECT status FROM runs WHERE run_uuid = ?", (run.info.run_id,)).fetchone() == \
            ("FINISHED",)
    assert list((out / "mlartifacts").rglob("note.txt"))[0].read_text() == "through the server"


@pytest.mark.slow  # a real `srprior ui` server
def test_srprior_ui_off_loopback_asks_for_the_credentials(tmp_path):
    """`srprior ui --host ADDR` (how deploy/ starts it on the head) serves with the head's credentials: the page
    and the API answer 401 without them; with them the UI lists the runs and the newest-experiment link works."""
    import os
    import signal
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    out = tmp_path / "out"
    newest = tracking.experiment_id(MlflowClient(tracking.default_tracking_uri(out)), "srprior/table-4.2")
    port = tracking.free_port("127.0.0.2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen([sys.executable, "-m", "srprior.cli", "ui", "--output-dir", str(out), "--host",
                             "127.0.0.2", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.2:{port}"
    try:
        assert proc.stdout.readline().startswith(f"MLflow UI: {url}")  # printed once the server answers
        assert proc.stdout.readline() == f"Log in as srprior with the password in {out / credentials.FILE}\n"
        assert proc.stdout.readline() == f"Runs of srprior/table-4.2 (newest): {tracking.ui_url(url, newest)}\n"
        creds = credentials.load(out)
        assert _status(url, path="/", body=None) == 401 and _status(url) == 401
        assert _status(url, creds.header(), path="/", body=None) == 200 and _status(url, creds.header()) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert oct((out / credentials.FILE).stat().st_mode & 0o777) == "0o600"
