"""MLflow plumbing: where the store lives, a tracking server for concurrent writers, get-or-create runs, `srprior ui`.

Store: $MLFLOW_TRACKING_URI when set (it always wins), else a SQLite DB at an ABSOLUTE path under the output
folder (Ray changes every trial's and worker's cwd, so a relative `sqlite:///mlflow.db` would scatter DBs).

Why a server and not the SQLite file directly: trials write from several processes at once. MLflow's SQLite
store waits up to 20 s on a lock (PRAGMA busy_timeout), but a lock that outlasts it raises "database is locked"
and the metric is gone. Behind `mlflow server` every write is an HTTP request that MLflow's client retries on
5xx with backoff (7 tries), so a transient lock costs a retry, never a metric; artifacts travel over the same
URL (proxied to `mlartifacts/`), which is also what makes trials on other cluster nodes work. Hence: local
sweeps start a server on 127.0.0.1 (one uvicorn worker: one process owns the DB file) and clusters run one on
the head (deploy/cluster.yaml).

Runs are keyed by tags, never by name, so a retried or resumed trial finds and continues its run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from srprior import contracts

DEFAULT_OUTPUT = "outputs"
OUTPUT_ENV = "SRPRIOR_OUTPUT"  # the output folder when --output-dir is not given (cluster configs export it)
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for the entrypoint of a Ray job
JOB_OUTPUT = "srprior-outputs"  # under $HOME, where deploy/ puts the head's store
SERVER_START_TIMEOUT_S = 180.0  # on an idle box; longer under load (wait_healthy)
WAIT_NOTE_S = 30.0
LOOPBACK = ("127.0.0.1", "localhost")


def output_dir(path: str | os.PathLike | None = None) -> Path:
    """The platform's output folder, absolute: `path`, else $SRPRIOR_OUTPUT, else ~/srprior-outputs inside a Ray
    job (`ray job submit` runs in a temporary copy of the working dir, which Ray deletes), else ./outputs."""
    if path:
        return Path(path).expanduser().resolve()
    if os.environ.get(OUTPUT_ENV):
        return Path(os.environ[OUTPUT_ENV]).expanduser().resolve()
    if os.environ.get(RAY_JOB_ENV):
        return Path.home() / JOB_OUTPUT
    return Path(DEFAULT_OUTPUT).resolve()


def default_tracking_uri(output: str | os.PathLike | None = None) -> str:
    """The platform's own store: SQLite at <output>/mlflow.db (absolute path)."""
    return f"sqlite:///{output_dir(output) / 'mlflow.db'}"


def artifacts_dir(output: str | os.PathLike | None = None) -> Path:
    """Where a local server stores proxied artifacts (mlflow-artifacts:/ URIs resolve here)."""
    return output_dir(output) / "mlartifacts"


def served_artifacts(tracking_uri: str, artifact_uri: str) -> Path | None:
    """The local folder of a run's mlflow-artifacts:/ URI (what a local server serves) when reading its SQLite
    store directly; None for any other URI (MLflow's client resolves those)."""
    from urllib.parse import urlparse

    if not (artifact_uri.startswith("mlflow-artifacts:") and tracking_uri.startswith("sqlite:///")):
        return None
    return artifacts_dir(Path(tracking_uri.removeprefix("sqlite:///")).parent) / urlparse(artifact_uri).path.lstrip("/")


def read_json_artifact(tracking_uri: str, run_id: str, path: str) -> Any | None:
    """A run's JSON artifact `path`, also from runs a local server wrote (served_artifacts); None when absent."""
    import tempfile

    from mlflow.exceptions import MlflowException

    mlflow_client = client(tracking_uri)
    local = served_artifacts(tracking_uri, mlflow_client.get_run(run_id).info.artifact_uri)
    if local is not None:
        file = local / path
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(mlflow_client.download_artifacts(run_id, path, tmp)).read_text(encoding="utf-8"))
        except (MlflowException, OSError):
            return None


def user_tracking_uri() -> str | None:
    """$MLFLOW_TRACKING_URI, when the user set one."""
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Block until `url`/health answers 200; raise with the server log's tail if it dies or times out. On a busy
    box the server's start-up takes longer (64-150 s measured beside a sweep that kept both cores busy): the wait
    grows with the load per core (`load_scaled`, at most 4× `timeout`), and says so every WAIT_NOTE_S seconds."""
    start = time.monotonic()
    noted, waited = 1, 0.0
    while waited < load_scaled(timeout):
        if proc is not None and proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
        waited = time.monotonic() - start
        if waited >= noted * WAIT_NOTE_S:
            noted += 1
            print(f"srprior: waiting for the MLflow tracking server at {url} ({waited:.0f} s, load "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; up to {load_scaled(timeout):.0f} s)",
                  file=sys.stderr, flush=True)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    state = f"exited with code {proc.returncode}" if proc is not None and proc.poll() is not None else \
        f"did not answer within {waited:.0f} s"
    raise RuntimeError(f"MLflow server at {url} {state}; log {log}:\n{tail}")


def load_scaled(timeout: float) -> float:
    """`timeout` × the 1-minute load per core when above 1, at most 4× `timeout`."""
    return timeout * min(4.0, max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))


def _die_with_parent() -> None:
    """Linux: SIGTERM the server when its parent dies, even by SIGKILL (it then stops its uvicorn child)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class TrackingServer:
    """`mlflow server` over `backend_uri` as a child process (own session, so stop() takes its workers too)."""

    def __init__(self, backend_uri: str, artifacts: Path, host: str = "127.0.0.1", port: int | None = None,
                 log: Path | None = None, workers: int = 1, auth: Any = None):
        self.backend_uri, self.artifacts, self.host = backend_uri, Path(artifacts), host
        self.auth = auth  # srprior.credentials.Credentials: MLflow's basic-auth app (clusters), else None
        self.port = port or free_port(host)
        self.log = log or self.artifacts.parent / "mlflow-server.log"
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def launch(self) -> TrackingServer:
        """Start the process without waiting (overlap it with Ray's start-up); then call wait()."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:  # else /health would be answered by whatever holds the port
                s.bind((self.host, self.port))
            except OSError:
                raise RuntimeError(f"port {self.port} on {self.host} is already in use; choose another "
                                   "(--port)") from None
        from srprior.store import ensure_store

        ensure_store(self.backend_uri)  # migrated once, before the server opens it
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.artifacts), "--host", self.host, "--port", str(self.port),
               "--workers", str(self.workers), *self.security_options()]
        # No GenAI job runner: it would add 8 worker processes that a sweep never uses.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if self.auth is not None:
            cmd += ["--app-name", "basic-auth"]
            env.update(self.auth.server_env())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True, preexec_fn=_die_with_parent)
        return self

    def security_options(self) -> list[str]:
        """Bound to an interface other than loopback (a cluster's head), the server must accept the Host header
        that clients on other nodes send — its own address, which MLflow's default allow-list (localhost and
        RFC 1918 ranges) may refuse ("403 Invalid Host header") — and nothing else; browsers may call it from its
        own origin only."""
        if self.host in LOOPBACK or self.host in ("0.0.0.0", "::", ""):
            return []
        hosts = [self.host, f"{self.host}:{self.port}", *LOOPBACK, *(f"{h}:{self.port}" for h in LOOPBACK)]
        return ["--allowed-hosts", ",".join(hosts), "--cors-allowed-origins", self.url]

    def wait(self, timeout: float = SERVER_START_TIMEOUT_S) -> TrackingServer:
        try:
            wait_healthy(self.url, timeout, self.proc, self.log)
        except RuntimeError:
            self.stop()
            raise
        return self

    def start(self, timeout: float = SERVER_START_TIMEOUT_S) -> TrackingServer:
        return self.launch().wait(timeout)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:  # the server's own session: uvicorn and its workers, also when the server process itself died
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        _forget_artifact_repos()

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- runs
def _forget_artifact_repos() -> None:
    """MLflow caches a run's artifact repository by run id alone, bound to the server that first served it; a
    later server (another port) in this process would be sent the run's artifacts at the dead address."""
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()


def client(uri: str):
    """An MlflowClient; a SQLite store is created or migrated first, once, under its lock (srprior.store)."""
    from mlflow.tracking import MlflowClient

    from srprior.store import ensure_store

    ensure_store(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client: Any, name: str, description: str | None = None) -> str:
    """Get or create the experiment `name`; safe when several processes race to create it.

    `description` becomes the experiment's description in the UI (the `mlflow.note.content` tag), set when
    creating it and when it has none; one the researcher wrote (or edited in the UI) is never overwritten."""
    from mlflow.exceptions import MlflowException

    tags = {contracts.NOTE: description} if description else None
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        try:
            return mlflow_client.create_experiment(name, tags=tags)
        except MlflowException:
            exp = mlflow_client.get_experiment_by_name(name)
            if exp is None:
                raise
    if description and not exp.tags.get(contracts.NOTE):
        mlflow_client.set_experiment_tag(exp.experiment_id, contracts.NOTE, description)
    return exp.experiment_id


def find_runs(mlflow_client: Any, exp_id: str, tags: dict[str, str]) -> list[Any]:
    """Runs (oldest first, deleted excluded) whose tags include all of `tags`; every page."""
    return contracts.search_all(mlflow_client, [exp_id], contracts.tag_filter(tags))


def store_exists(uri: str) -> bool:
    """False for a SQLite URI whose file is missing (opening it would create an empty store)."""
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def runs_by_key(uri: str, keys: set[str] | None = None) -> dict[str, Any]:
    """The run that answers each content key (srprior.schema.Trial.key), across every srprior experiment:
    the newest FINISHED run, else the newest unfinished one (to be resumed). {} when the store does not exist."""
    if not store_exists(uri):
        return {}
    mlflow_client = client(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(mlflow_client)]
    runs = contracts.search_all(mlflow_client, exps, contracts.tag_filter({contracts.ROLE: "trial"}))
    best: dict[str, Any] = {}
    for run in runs:  # oldest first: a later run of the same rank replaces an earlier one
        key = run.data.tags.get(contracts.RUN_KEY)
        if key is None or (keys is not None and key not in keys):
            continue
        old = best.get(key)
        if old is None or (run.info.status == "FINISHED") >= (old.info.status == "FINISHED"):
            best[key] = run
    return best


def get_or_create_run(mlflow_client: Any, exp_id: str, key: dict[str, str], run_name: str,
                      extra_tags: dict[str, str] | None = None, run_id: str | None = None) -> str:
    """The run identified by the `key` tags (or by `run_id`, e.g. from a checkpoint), created when missing.

    Reopened runs are set back to RUNNING so the UI shows the resumed trial as live."""
    from mlflow.exceptions import MlflowException

    existing = None
    if run_id:
        try:
            run = mlflow_client.get_run(run_id)
            existing = run if run.info.lifecycle_stage == "active" else None
        except MlflowException:
            existing = None
    if existing is None:
        found = find_runs(mlflow_client, exp_id, key)
        existing = found[0] if found else None
    if existing is not None:
        if existing.info.status != "RUNNING":
            mlflow_client.update_run(existing.info.run_id, status="RUNNING")
        if contracts.FAILURE in existing.data.tags:  # the earlier failure no longer describes the run
            mlflow_client.delete_tag(existing.info.run_id, contracts.FAILURE)
        return existing.info.run_id
    tags = {**key, **(extra_tags or {})}
    return mlflow_client.create_run(exp_id, tags=tags, run_name=run_name).info.run_id


# ---------------------------------------------------------------------------------------------- srprior ui


RUNS_VIEW = "srprior"  # key of the runs view a sweep saves on its experiment (MLflow's shared view state)
VIEW_TAG = "mlflow.sharedViewState."  # MLflow 3.17's experiment tag prefix for a shared view (UI: "Share")


def save_runs_view(mlflow_client: Any, experiment_id: str, metrics: list[str]) -> None:
    """Save the runs table a user should land on as the experiment's shared view, which the UI reads from the
    tag `mlflow.sharedViewState.<key>` when the link carries `viewStateShareKey=<key>` (columns are UI state,
    not URL parameters, in MLflow 3.17): the trial runs only, so they are listed flat instead of folded under
    the sweep's run, with `metrics` (what the report shows) and λ_AP as columns."""
    columns = [f"metrics.`{m}`" for m in metrics] + ["params.`lambda_ap`", "params.`preset`"]
    state = {"searchFilter": f"tags.`{contracts.ROLE}` = 'trial'", "selectedColumns": columns,
             "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": contracts.ROW}]}}
    mlflow_client.set_experiment_tag(experiment_id, VIEW_TAG + RUNS_VIEW, json.dumps(state))


def ui_url(base_url: str, experiment_id: str, view: bool = False) -> str:
    """The link that opens an experiment's training runs in the MLflow 3.17 UI (`view`: in the saved runs view).

    The UI routes in the URL fragment, and a browser it has never seen starts in its GenAI view (traces,
    evaluations), where training runs are not listed: `workflowType=machine_learning` selects the runs table."""
    shared = f"&viewStateShareKey={RUNS_VIEW}" if view else ""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning{shared}"


def newest_experiment(url: str, timeout: float = 5.0, auth: Any = None) -> tuple[str, str, bool] | None:
    """(id, name, has the saved runs view) of the most recently created srprior experiment behind the server at
    `url`, None when there is none or the server does not answer within `timeout` (REST, not MlflowClient: that
    retries for minutes)."""
    body = {"max_results": 1, "filter": f"name LIKE '{contracts.EXPERIMENT_PREFIX}%'",
            "order_by": ["creation_time DESC"]}
    req = urllib.request.Request(f"{url.rstrip('/')}/api/2.0/mlflow/experiments/search", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(auth.header() if auth else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            found = json.loads(resp.read()).get("experiments", [])
    except (OSError, ValueError):
        return None
    if not found:
        return None
    tags = {tag["key"] for tag in found[0].get("tags", [])}
    return found[0]["experiment_id"], found[0]["name"], VIEW_TAG + RUNS_VIEW in tags


def command(*args: str) -> str:
    """A `srprior ...` command that runs as printed from this shell: `srprior` when it is the one on PATH,
    else this installation's script (e.g. `.venv/bin/srprior` when the venv is not activated)."""
    import shutil

    script = Path(sys.executable).with_name("srprior")
    found = shutil.which("srprior")
    if found and Path(found).resolve() == script.resolve():
        prefix = "srprior"
    elif script.exists():
        try:
            prefix = str(script.relative_to(Path.cwd()))
        except ValueError:
            prefix = str(script)
    else:
        prefix = f"{shlex.quote(sys.executable)} -m srprior.cli"
    return " ".join([prefix, *(shlex.quote(a) for a in args)])


def ui_command(output: str | os.PathLike | None) -> str:
    """What opens the UI on the store a sweep used (printed at the end of every sweep): the `srprior ui`
    command for a local store, the server's address when the store is a remote one."""
    uri = user_tracking_uri()
    if uri and is_remote(uri):
        return uri
    out = output_dir(output)
    return command("ui") if out == Path(DEFAULT_OUTPUT).resolve() else command("ui", "--output-dir", str(out))
