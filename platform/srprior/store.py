"""The SQLite MLflow store: created and migrated exactly once, under a file lock, before any server or writer opens it.

Why: MLflow creates and migrates a SQLite store on its first open, through alembic batch operations that copy
each altered table into `_alembic_tmp_<table>` (SQLite DDL is not transactional here). Two sweeps started at once
in a fresh folder both migrate: both fail with "table _alembic_tmp_tags already exists" and the store is left
half-migrated, so every later sweep, report and `srprior ui` fails too. So every opener (tracking.client on a
SQLite URI, and the tracking server before it starts) calls `ensure_store` first: under `<db>.lock` it reads the
schema revision and looks for leftover `_alembic_tmp_*` tables, and

- creates a missing store (file mode 0600) and migrates it to MLflow's head revision;
- upgrades an older complete store after copying it to `<db>.bak-<revision>`;
- recreates a half-migrated store that holds no run (a cold start that failed: nothing to lose);
- refuses a half-migrated store that holds runs, with the fix (restore the backup), rather than guess.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from srprior.errors import UserError
from srprior.locks import locked

LOCK_TIMEOUT_S = 300.0  # a migration takes seconds; a stuck holder is a bug worth an error
_READY: set[Path] = set()  # stores this process has checked


class StoreError(UserError, RuntimeError):
    """A store that cannot be used as it is; the message says why and how to fix it."""


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _inspect(path: Path) -> tuple[str | None, list[str], int]:
    """(alembic revision or None, leftover _alembic_tmp_* tables, runs) of the store at `path`."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        revision = db.execute("SELECT version_num FROM alembic_version").fetchone() \
            if "alembic_version" in tables else None
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    return (revision[0] if revision else None), sorted(t for t in tables if t.startswith("_alembic_tmp_")), runs


def _create(uri: str, path: Path) -> None:
    import logging

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial ... tables" x2

    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # SQLite keeps the mode of an existing file
    SqlAlchemyStore(uri, "mlflow-artifacts:/").engine.dispose()


def ensure_store(uri: str) -> None:
    """Create, migrate or repair the SQLite store at `uri` under its lock (see the module docstring); other URIs:
    nothing to do."""
    path = sqlite_path(uri)
    if path is None or path in _READY:
        return
    from mlflow.store.db.utils import _get_latest_schema_revision, _upgrade_db

    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(f"{path}.lock", LOCK_TIMEOUT_S, "MLflow store"):
        head = _get_latest_schema_revision()
        if not path.is_file() or path.stat().st_size == 0:
            _create(uri, path)
        else:
            revision, leftovers, runs = _inspect(path)
            if leftovers or revision is None:
                if runs:
                    raise StoreError(
                        f"{path}: half-migrated MLflow store (revision {revision}, leftover tables "
                        f"{', '.join(leftovers) or 'none'}) holding {runs} runs; restore its backup "
                        f"({path.name}.bak-* next to it) or drop the leftover tables and run "
                        f"`mlflow db upgrade {uri}`")
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                stale = SqlAlchemyStore._engine_map.pop(uri, None)  # pooled connections to the old file
                if stale is not None:
                    stale.dispose()
                path.unlink()  # a failed cold start: no run to lose
                _create(uri, path)
            elif revision != head:
                shutil.copy2(path, f"{path}.bak-{revision}")
                from sqlalchemy import create_engine

                engine = create_engine(uri)
                try:
                    _upgrade_db(engine)
                finally:
                    engine.dispose()
    _READY.add(path)
