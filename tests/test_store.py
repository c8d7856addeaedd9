"""The SQLite store and sweep leases against real files, real MLflow migrations and real processes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from srprior import contracts, locks, stopping, store, tracking

OPEN = """
import sys, time
from srprior import tracking
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.005)
client = tracking.client(sys.argv[1])
client.create_run(tracking.experiment_id(client, "srprior/race-" + sys.argv[3]))
"""


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _integrity(path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.slow
def test_cold_concurrent_openers_migrate_the_store_once(tmp_path):
    """Three processes open a fresh store at the same instant (without the lock all three fail with 'table
    _alembic_tmp_... already exists' and leave it half-migrated): all succeed, the store is whole, 0600."""
    uri = tracking.default_tracking_uri(tmp_path)
    start = time.time() + 6  # after every interpreter has imported mlflow
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, uri, str(start), str(i)], stderr=subprocess.PIPE,
                              text=True) for i in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    db = tmp_path / "mlflow.db"
    assert _integrity(db) == "ok" and not any(t.startswith("_alembic_tmp_") for t in _tables(db))
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    client = MlflowClient(uri)
    assert sorted(e.name for e in client.search_experiments() if e.name.startswith("srprior/")) == \
        ["srprior/race-0", "srprior/race-1", "srprior/race-2"]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """A store at MLflow's head revision, made once (a migration costs seconds); tests take copies."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    tracking.client(f"sqlite:///{path}").search_experiments()
    return path


def _copy(template, folder):
    path = folder / "mlflow.db"
    shutil.copy2(template, path)
    return path


def _half_migrated(path, with_run: bool) -> None:
    """A store as a failed cold start leaves it: an older revision and a leftover _alembic_tmp_ copy."""
    if with_run:
        client = tracking.client(f"sqlite:///{path}")
        client.create_run(tracking.experiment_id(client, "srprior/x"))
        store._READY.discard(path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE _alembic_tmp_tags AS SELECT * FROM tags")
        db.execute("UPDATE alembic_version SET version_num = '4465047574b1'")


def test_half_migrated_store_without_runs_is_recreated(tmp_path, migrated):
    path = _copy(migrated, tmp_path)
    _half_migrated(path, with_run=False)
    client = tracking.client(f"sqlite:///{path}")
    assert client.search_experiments()[0].name == "Default"
    assert not any(t.startswith("_alembic_tmp_") for t in _tables(path)) and _integrity(path) == "ok"
    with sqlite3.connect(path) as db:
        from mlflow.store.db.utils import _get_latest_schema_revision

        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == _get_latest_schema_revision()


def test_half_migrated_store_with_runs_is_refused_with_the_fix(tmp_path, migrated):
    path = _copy(migrated, tmp_path)
    _half_migrated(path, with_run=True)
    with pytest.raises(store.StoreError, match=r"half-migrated MLflow store \(revision 4465047574b1, leftover "
                                               r"tables _alembic_tmp_tags\) holding 1 runs; restore its backup"):
        store.ensure_store(f"sqlite:///{path}")


def test_old_store_is_backed_up_and_upgraded(tmp_path):
    """A store at an older MLflow schema (built with MLflow's own migrations up to that revision)."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from sqlalchemy import create_engine

    path = tmp_path / "mlflow.db"
    engine = create_engine(f"sqlite:///{path}")
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "4465047574b1")
    engine.dispose()
    store.ensure_store(f"sqlite:///{path}")
    assert (tmp_path / "mlflow.db.bak-4465047574b1").is_file()
    assert tracking.client(f"sqlite:///{path}").search_experiments()[0].name == "Default"


def test_sweep_lease_tells_live_from_dead_sweeps(tmp_path):
    """A lease is held while its process lives and freed when it dies, even by SIGKILL."""
    from srprior.locks import LeaseError

    assert locks.sweep_alive(tmp_path, "s1") is None  # never ran here
    with locks.sweep_lease(tmp_path, "s1"):
        assert locks.sweep_alive(tmp_path, "s1") is True
        with pytest.raises(LeaseError, match="sweep 's1' is running in another process"):
            with locks.sweep_lease(tmp_path, "s1"):
                pass
    assert locks.sweep_alive(tmp_path, "s1") is False
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from srprior.locks import sweep_lease\n"
                               "with sweep_lease(Path(sys.argv[1]), 's2'):\n print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    assert locks.sweep_alive(tmp_path, "s2") is True
    holder.kill()
    holder.wait()
    assert locks.sweep_alive(tmp_path, "s2") is False
    assert stat.S_IMODE(locks.lease_path(tmp_path, "s2").stat().st_mode) == 0o600


def test_runs_left_running_by_a_dead_sweep_are_marked_killed(tmp_path, migrated):
    uri = f"sqlite:///{_copy(migrated, tmp_path)}"
    client = tracking.client(uri)
    exp = tracking.experiment_id(client, "srprior/table-x")

    def run(owner: str) -> str:
        return client.create_run(exp, tags={contracts.ROLE: "trial", contracts.OWNER: owner}).info.run_id

    dead, live, unknown, mine = run("dead"), run("live"), run("elsewhere"), run("me")
    with locks.sweep_lease(tmp_path, "dead"):
        pass
    with locks.sweep_lease(tmp_path, "live"), locks.sweep_lease(tmp_path, "me"):
        runs = [client.get_run(r) for r in (dead, live, unknown, mine)]
        assert sorted(stopping.mark_orphaned_runs(uri, runs, tmp_path, by="me")) == sorted([dead, mine])
    status = {r: client.get_run(r).info.status for r in (dead, live, unknown, mine)}
    assert status == {dead: "KILLED", live: "RUNNING", unknown: "RUNNING", mine: "KILLED"}
    assert client.get_run(dead).data.tags[contracts.FAILURE] == \
        "killed: sweep dead ended while the run was RUNNING (marked by sweep me)"
    # continued by the next sweep: RUNNING again, the stale reason dropped
    key = {contracts.ROLE: "trial", contracts.OWNER: "dead"}
    assert tracking.get_or_create_run(client, exp, key, "r", run_id=dead) == dead
    assert client.get_run(dead).info.status == "RUNNING" and contracts.FAILURE not in client.get_run(dead).data.tags


def test_output_dir_follows_the_environment_and_ray_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in (tracking.OUTPUT_ENV, tracking.RAY_JOB_ENV):
        monkeypatch.delenv(var, raising=False)
    assert tracking.output_dir(None) == tmp_path / "outputs"
    monkeypatch.setenv(tracking.RAY_JOB_ENV, "{}")  # `ray job submit`: the cwd is Ray's temporary copy
    assert tracking.output_dir(None) == tracking.Path.home() / "srprior-outputs"
    assert tracking.ui_command(None) == tracking.command("ui", "--output-dir",
                                                        str(tracking.Path.home() / "srprior-outputs"))
    monkeypatch.setenv(tracking.OUTPUT_ENV, str(tmp_path / "shared"))
    assert tracking.output_dir(None) == tmp_path / "shared"
    assert tracking.output_dir("explicit") == tmp_path / "explicit"


def test_server_off_loopback_allows_its_own_host_header_only(tmp_path):
    local = tracking.TrackingServer("sqlite:///x.db", tmp_path, port=5000)
    assert local.security_options() == []  # loopback: MLflow's defaults
    head = tracking.TrackingServer("sqlite:///x.db", tmp_path, host="127.0.0.2", port=5000)
    assert head.security_options() == [
        "--allowed-hosts", "127.0.0.2,127.0.0.2:5000,127.0.0.1,localhost,127.0.0.1:5000,localhost:5000",
        "--cors-allowed-origins", "http://127.0.0.2:5000"]
    assert os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS") is None
