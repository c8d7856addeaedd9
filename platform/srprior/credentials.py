"""Credentials of a cluster's tracking server: MLflow's basic-auth app with a per-cluster secret.

Why: on a cluster the MLflow server listens on the head's private address (srprior.exposure), and without
authentication anyone who reaches that address can change or delete every run; Ray's token covers Ray, not MLflow.

What: the first cluster sweep on a head generates a user (`srprior`, an MLflow admin) with a random password and
the Flask secret key basic-auth's CSRF protection needs, into `<output>/tracking-auth.json`, readable by its
owner only (0600, in the 0700 output folder); the users database `tracking-auth.db` beside it is prepared under
a lock, so sweeps that start their servers at once never race to create it. The server runs `mlflow server
--app-name basic-auth` against them; every client — the sweep, its Tune drivers and Ray Train workers on every
node — sends MLflow's standard MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. The sweep sets them in its
own environment; the other processes get them from a 0600 file on the cluster's shared storage (`share`), whose
*path* alone travels in Ray's job runtime environment (SRPRIOR_TRACKING_AUTH_FILE): Ray's runtime-env agent logs
that environment in plain text into world-readable files on every node, so a secret there is a secret no more.
Each driver and worker reads the file (`adopt`). A request without them gets 401. `srprior ui` on the head serves
with the same credentials. Local sweeps (127.0.0.1) stay credential-free.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USERNAME = "srprior"
FILE = "tracking-auth.json"  # under the output folder of the head
USERS_DB = "tracking-auth.db"
CONFIG = "tracking-auth.ini"
LOCK_TIMEOUT_S = 120.0
CLIENT_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
FILE_ENV = "SRPRIOR_TRACKING_AUTH_FILE"  # in Ray's runtime env: where the clients' credentials lie (`share`)
CLIENT_FILE = "tracking-client.json"  # under --storage when the output folder's FILE is not on it


@dataclass(frozen=True)
class Credentials:
    """The tracking server's one user, and where its server-side files live."""

    folder: Path
    username: str
    password: str
    secret_key: str  # Flask's key for basic-auth's CSRF tokens: the same for every worker of the server

    @property
    def file(self) -> Path:
        return self.folder / FILE

    def client_env(self) -> dict[str, str]:
        """What MLflow's client reads to authenticate (every request, so setting it at any time works)."""
        return dict(zip(CLIENT_ENV, (self.username, self.password)))

    def server_env(self) -> dict[str, str]:
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.folder / CONFIG), "MLFLOW_AUTH_ADMIN_USERNAME": self.username,
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.password, "MLFLOW_FLASK_SERVER_SECRET_KEY": self.secret_key}

    def header(self) -> dict[str, str]:
        """The HTTP Basic header for stdlib requests (srprior.tracking's REST calls)."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def load(output: Path) -> Credentials | None:
    """The head's credentials in `output`, None when it has none (a local store)."""
    path = Path(output) / FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Credentials(Path(output), data["username"], data["password"], data["secret_key"])


def ensure(output: Path) -> Credentials:
    """Load or generate the credentials of `output` and prepare the server's users database (see the module
    docstring). Several sweeps may call it at once: the file appears complete or not at all (link, not write)."""
    from srprior.locks import locked

    folder = Path(output)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(folder / f"{FILE}.lock", LOCK_TIMEOUT_S, "tracking credentials"):
        creds = load(folder)
        if creds is None:
            creds = Credentials(folder, USERNAME, secrets.token_urlsafe(32), secrets.token_hex(32))
            (folder / USERS_DB).unlink(missing_ok=True)  # its admin would keep an old password
            fields = {"username": creds.username, "password": creds.password, "secret_key": creds.secret_key}
            _write_private(creds.file, json.dumps(fields))
        _write_private(folder / CONFIG, _config(folder))
        _prepare_users(creds)
    return creds


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _config(folder: Path) -> str:
    """basic-auth's config: our users database; users other than the admin may do nothing by default."""
    return ("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{(folder / USERS_DB).resolve()}\nadmin_username = {USERNAME}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")


def _prepare_users(creds: Credentials) -> None:
    """Migrate the users database and create the admin, here under the lock rather than in each server."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    db = creds.folder / USERS_DB
    store = SqlAlchemyStore()
    store.init_db(f"sqlite:///{db.resolve()}")
    if not store.has_user(creds.username, use_primary=True):
        store.create_user(creds.username, creds.password, is_admin=True)
    store.engine.dispose()
    db.chmod(0o600)  # password hashes


def for_sweep(output: Path, own_cluster_server: bool, user_uri: str | None) -> Credentials | None:
    """The credentials a sweep's MLflow clients send, set in this process's environment: its own server on a
    cluster (generated on first use), or the head's `srprior ui` server that MLFLOW_TRACKING_URI names
    (deploy/cluster.yaml), whose credentials lie in the same output folder. Credentials the user exported win
    for a server that is not ours."""
    if own_cluster_server:
        creds = ensure(output)
        os.environ.update(creds.client_env())
        return creds
    creds = load(output) if user_uri and user_uri.startswith(("http://", "https://")) else None
    for key, value in (creds.client_env() if creds else {}).items():
        os.environ.setdefault(key, value)
    return creds


def runtime_env(storage: str, output: Path) -> dict[str, Any] | None:
    """Ray's job runtime environment for the Tune drivers and Train workers of a cluster: the path of the file
    holding this process's MLflow credentials (`share`), never the credentials (a local Ray inherits them: its
    processes are this one's children)."""
    env = {key: os.environ[key] for key in CLIENT_ENV if os.environ.get(key)}
    return {"env_vars": {FILE_ENV: share(env, storage, Path(output))}} if env else None


def share(env: dict[str, str], storage: str, output: Path) -> str:
    """Where the clients' credentials `env` lie on the shared storage: the output folder's FILE when the storage
    is inside it and holds the same user, else CLIENT_FILE under the storage (0600 on a filesystem; an object
    store's own access rules on `scheme://`)."""
    fields = {"username": env.get(CLIENT_ENV[0], ""), "password": env.get(CLIENT_ENV[1], "")}
    text = json.dumps(fields)
    if "://" in storage:
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(storage.rstrip("/") + "/" + CLIENT_FILE)
        with fs.open_output_stream(path) as f:
            f.write(text.encode())
        return storage.rstrip("/") + "/" + CLIENT_FILE
    own = load(output)
    if own is not None and (own.username, own.password) == tuple(fields.values()) and \
            Path(storage).resolve().is_relative_to(Path(output).resolve()):
        return str(own.file.resolve())
    Path(storage).mkdir(parents=True, exist_ok=True)
    _write_private(Path(storage) / CLIENT_FILE, text)
    return str((Path(storage) / CLIENT_FILE).resolve())


def adopt() -> None:
    """In a Tune driver or Train worker of a cluster: MLflow's client credentials from the file the runtime
    environment names (`share`); nothing when there is none, or when the process has its own."""
    location = os.environ.get(FILE_ENV)
    if not location or os.environ.get(CLIENT_ENV[1]):
        return
    if "://" in location:
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(location)
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read().decode())
    else:
        data = json.loads(Path(location).read_text())
    os.environ.update(zip(CLIENT_ENV, (data["username"], data["password"])))
