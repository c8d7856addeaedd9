"""Checks a sweep makes before Ray starts, so that errors which would repeat in every trial surface once, early,
as one line: the data every trial will read, the free disk space, the storage location.

Data: each distinct data source of the trials to train is read with the reader the trial uses
(srprior.data.datasets.check_folder: the same pairing, full decode and size checks as load_folder, keeping no
image) — the training folder (DIV2K train + valid, or a plain HR folder; every LR side at least the training
patch), each evaluation benchmark (its first `max_eval_images`), and the LAM demo images of the DI protocol.
The embedded default ships with the package and is not checked. Found inside Ray after training, the same bad
file cost a whole trial and Train's retries.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from srprior.errors import UserError

MIN_FREE_MB = 200  # below this a sweep stops before it starts (and the watchdog stops a running one)


class PreflightError(UserError, ValueError):
    """A check before the sweep failed; the message names the file, folder or value and the fix."""


def min_free_bytes() -> int:
    return int(float(os.environ.get("SRPRIOR_MIN_FREE_MB", MIN_FREE_MB)) * 2**20)


def check_free_space(folders: Iterable[Path]) -> None:
    """Refuse when a folder (or its nearest existing parent) has less than SRPRIOR_MIN_FREE_MB (200) MiB free."""
    need = min_free_bytes()
    for folder in folders:
        path = Path(folder)
        while not path.exists() and path != path.parent:
            path = path.parent
        free = shutil.disk_usage(path).free
        if free < need:
            raise PreflightError(f"{folder}: only {free / 2**20:.1f} MiB free on its disk (a sweep needs "
                                 f"{need / 2**20:.0f} MiB: SRPRIOR_MIN_FREE_MB); free space or choose another "
                                 "--output-dir / --storage")


NAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]{0,119}")


def check_name(flag: str, name: str) -> str:
    """A sweep id names a folder under the storage, MLflow tags and the printed resume command: `..` would be
    the storage's parent, a newline splits the summary, a leading `-` reads as an option."""
    if NAME_CHARS.fullmatch(name):
        return name
    shown = ascii(name[:40])[1:-1] + ("…" if len(name) > 40 else "")
    raise PreflightError(f"{flag} '{shown}': use 1-120 letters, digits and . _ + = @ -, starting with a letter or "
                         "digit (no quotes, slashes, spaces or control characters)")


def check_storage(value: str | None) -> None:
    """--storage is a folder or a URI `scheme://...`; `s3:/x` would silently become a relative folder."""
    if value and "://" not in value and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value):
        scheme, rest = value.split(":", 1)
        raise PreflightError(f"--storage {value}: not a URI (scheme://...) nor a folder; did you mean "
                             f"{scheme}://{rest.lstrip('/')}?")


def data_sources(cfg) -> set[tuple]:
    """What a trial of `cfg` reads (see the module docstring) as hashable descriptions, so that the trials of a
    sweep share the checks."""
    from srprior.contracts import BENCHMARK_DIRS, OPTIONAL_BENCHMARKS

    data, scale = cfg.data, cfg.model.scale
    out: set[tuple] = set()
    if data.train_root:
        root = Path(data.train_root)
        if (root / "DIV2K_train_HR").is_dir() or (root / "DIV2K" / "DIV2K_train_HR").is_dir():
            out |= {("div2k", root, "train", scale, 0, cfg.schedule.lr_patch),
                    ("div2k", root, "valid", scale, data.val_images, 0)}
        else:
            out.add(("folder", root, scale, 0, cfg.schedule.lr_patch))
    if data.data_root:
        root = Path(data.data_root)
        present = {p.name.lower() for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
        out |= {("benchmark", root, BENCHMARK_DIRS[name], scale, data.max_eval_images, 0)
                for name in data.benchmarks if name not in OPTIONAL_BENCHMARKS or name in present}
        if data.di:
            out.add(("lam", root, scale))
    return out


def _read(source: tuple) -> None:
    from srprior.data import datasets
    from srprior.method.lam import di_images

    kind, root, *rest = source
    if kind == "lam":
        di_images(root, rest[0])
    elif kind == "folder":
        datasets.check_folder(root, rest[0], limit=rest[1], min_lr_side=rest[2])
    else:
        name, scale, limit, min_side = rest
        hr_dir, lr_dir, cache = (datasets.div2k_dirs if kind == "div2k" else datasets.benchmark_dirs)(root, name, scale)
        datasets.check_folder(hr_dir, scale, lr_dir, cache, limit=limit, min_lr_side=min_side)


def check_data(configs: Iterable) -> int:
    """Read every data source of the trial configs `configs` once; raise PreflightError naming the bad file or
    folder. Returns how many sources were checked."""
    from srprior.data.datasets import DatasetError
    from srprior.data.io import ImageError

    sources = set().union(*(data_sources(c) for c in configs))
    for source in sorted(sources, key=str):
        try:
            _read(source)
        except (DatasetError, ImageError, FileNotFoundError) as exc:
            raise PreflightError(f"data check before training: {exc}") from None
    return len(sources)


TRACKING_TIMEOUT_S = 10.0
TRACKING_SCHEMES = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str, timeout: float = TRACKING_TIMEOUT_S) -> None:
    """A tracking URI MLflow can open, and for a server one that answers within `timeout` s (MLflow's own client
    retries an unreachable server for minutes). Also bounds the MLflow calls that follow."""
    import urllib.error
    import urllib.request

    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme.split("+", 1)[0] not in TRACKING_SCHEMES:
        raise PreflightError(f"tracking URI {uri!r}: unsupported scheme; use sqlite:////ABS/PATH/mlflow.db or "
                             "http://HOST:PORT")
    if scheme not in ("http", "https"):
        return
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        raise PreflightError(f"tracking URI {uri}: the server answered HTTP {exc.code} ({exc.reason}); is it an "
                             "MLflow server?") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PreflightError(f"tracking URI {uri}: not reachable ({reason}; timeout {timeout:.0f} s); start the "
                             "server or fix the URI") from None
