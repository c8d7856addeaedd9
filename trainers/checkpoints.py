"""Checkpoints that survive rot: every state.pt carries its SHA-256, and a resume falls back to an older intact one.

Ray Train keeps the last two checkpoints of a run (driver: CheckpointConfig(num_to_keep=2)) and hands a resumed
worker only the newest. A newest checkpoint that is truncated (a disk that filled, a node that died while
uploading), altered or gone used to fail the same way on every Train retry and every `--resume`. So `write`
stores `state.pt.sha256` (sha256sum's format) beside the state, and `load_intact` tries the newest checkpoint,
then the older ones of the same Train folder, newest first: the first whose checksum matches and which loads
wins, and the files skipped are named (a warning, and the `srprior.checkpoint_fallback` tag on the run). None
intact: the trial trains from step 0 (a checkpoint that cannot be read is never retried).

Layouts (srprior.trainers.steppers): a single trial's state keeps its member's keys (trial, model, optimizer,
best, run_id, ...) at the top level beside step, steps_s and the per-rank sampler/rng lists; a fused group's keeps
one such dict per member under "members". Readers go through `member_states` and `member_weights`.
"""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srprior.checksum import sha256_file
from srprior.contracts import CHECKPOINT_FILE, CHECKSUM_FILE

log = logging.getLogger(__name__)


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose state does not match its checksum."""


def write(state: dict, folder: Path) -> None:
    """state.pt and its checksum into `folder` (the directory that becomes the Train checkpoint). torch.save on a
    full disk raises an opaque RuntimeError ("unexpected pos …"): that one is raised as ENOSPC."""
    path = Path(folder) / CHECKPOINT_FILE
    try:
        torch.save(state, path)
    except RuntimeError as exc:
        if shutil.disk_usage(folder).free >= 2**20:
            raise
        raise OSError(errno.ENOSPC, f"No space left on device writing {path}") from exc
    (Path(folder) / CHECKSUM_FILE).write_text(f"{sha256_file(path)}  {CHECKPOINT_FILE}\n")


def _numpy_globals() -> list:
    """The numpy types of np.random.get_state() (the checkpoint's RNG state): all that torch.load's
    weights_only mode needs besides tensors and builtins."""
    core = getattr(np, "_core", None) or np.core
    return [np.ndarray, np.dtype, np.dtypes.UInt32DType, core.multiarray._reconstruct]


def load_state(path: Path, device: torch.device) -> dict:
    """A checkpoint written by this module, loaded with weights_only=True: a checkpoint from shared storage
    cannot run code when it is read."""
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location=device, weights_only=True)


def read(folder: Path, device: torch.device) -> dict:
    """The state in `folder`, checked against its checksum (checkpoints written before checksums: loaded as
    they are); raises CorruptCheckpoint, or whatever reading the file raises."""
    path, checksum = Path(folder) / CHECKPOINT_FILE, Path(folder) / CHECKSUM_FILE
    if checksum.is_file():
        expected = checksum.read_text().split()[0]
        if (found := sha256_file(path)) != expected:
            raise CorruptCheckpoint(f"SHA-256 {found[:12]}… does not match the stored {expected[:12]}…")
    return load_state(path, device)


def candidates(latest: Any) -> list[Any]:
    """`latest` (a ray.train.Checkpoint), then the older checkpoints of its Train folder, newest first (their
    folder names are Train's sortable timestamps), on whatever filesystem the storage is."""
    import pyarrow.fs
    import ray.train

    parent, name = latest.path.rstrip("/").rsplit("/", 1)
    infos = latest.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    older = sorted((i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                    and i.base_name.startswith("checkpoint_") and i.base_name < name), reverse=True)
    return [latest] + [ray.train.Checkpoint(path, filesystem=latest.filesystem) for path in older]


def load_intact(latest: Any, device: torch.device) -> tuple[dict | None, str | None]:
    """(state, note): the newest intact checkpoint from `candidates(latest)`, and a note naming the ones
    skipped and why (None when the newest was fine); (None, note) when none is intact."""
    skipped = []
    for checkpoint in candidates(latest):
        name = checkpoint.path.rstrip("/").rsplit("/", 1)[1]
        try:
            with checkpoint.as_directory() as d:
                state = read(Path(d), device)
        except Exception as exc:  # noqa: BLE001 - any failure to read this file makes it unusable, for good
            skipped.append(f"{name} ({type(exc).__name__}: {str(exc)[:200]})")
            log.warning("srprior: checkpoint %s unreadable: %s", checkpoint.path, exc)
            continue
        if not skipped:
            return state, None
        note = f"unreadable: {'; '.join(skipped)}; resumed from {name} (step {state.get('step')})"
        log.warning("srprior: %s", note)
        return state, note
    note = f"unreadable: {'; '.join(skipped)}; no intact checkpoint left, training from step 0"
    log.warning("srprior: %s", note)
    return None, note


def member_states(state: dict) -> list[dict]:
    """The per-member dicts of a checkpoint state, either layout (module docstring): a fused group's "members",
    or a single trial's state itself (one member)."""
    return state["members"] if "members" in state else [state]


def member_weights(member: dict, weights: str = "best") -> dict:
    """A member's best-validation weights (model selection, thesis §4.2) when asked and kept, else the last
    step's."""
    best = member.get("best") or {}
    return best["model"] if weights == "best" and best.get("model") is not None else member["model"]


def member_model(member: dict, weights: str = "best") -> tuple[torch.nn.Module, Any]:
    """(model in eval mode on the CPU, Trial) of a checkpoint member with its `weights` ("best" | "last",
    member_weights): the one way a stored trial becomes a model again (the trainer's final evaluation of a
    resumed run, backfill, HardCases-R)."""
    from srprior.archs import build_model
    from srprior.schema import Trial

    trial = Trial.from_dict(member["trial"])
    model = build_model(trial.config.model.preset, trial.config.model.scale)
    model.load_state_dict(member_weights(member, weights))
    return model.eval(), trial


SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's list of a run's kept checkpoints


def drop_unreadable_snapshot(folder: Path) -> str | None:
    """Ray Train rewrites a run's SNAPSHOT in place: on a full disk it is left empty or cut, and every later start
    of the run fails on it ("Expecting value"), `--resume` too. Such a snapshot is moved aside (`.unreadable`):
    Train starts the run afresh and the worker resumes from the newest intact checkpoint of its folder
    (`newest_in`). Returns what was done, or None."""
    import json

    path = Path(folder) / SNAPSHOT
    try:
        json.loads(path.read_text())
        return None
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        path.replace(path.with_name(SNAPSHOT + ".unreadable"))
        log.warning("srprior: %s unreadable (%s): moved aside, resuming from the checkpoints in the folder", path, exc)
        return f"{path} unreadable ({exc})"


def newest_in(storage: Any) -> Any:
    """The newest checkpoint_* folder of a Train run (its StorageContext), as a ray.train.Checkpoint, or None: what
    a run whose snapshot was dropped (`drop_unreadable_snapshot`) resumes from (load_intact falls back further)."""
    import pyarrow.fs
    import ray.train

    fs, folder = storage.storage_filesystem, storage.experiment_fs_path
    infos = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    names = sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.Directory
                   and i.base_name.startswith("checkpoint_"))
    return ray.train.Checkpoint(names[-1], filesystem=fs) if names else None


def find_checkpoints(output_dir: str | Path) -> list[Path]:
    """The newest state.pt of every Ray Train run under `<output_dir>/ray` (checkpoint_N with the highest N)."""
    newest: dict[Path, Path] = {}
    for path in sorted(Path(output_dir).glob(f"ray/**/checkpoint_*/{CHECKPOINT_FILE}")):
        newest[path.parent.parent] = path  # sorted: checkpoint_000010 after checkpoint_000009
    return sorted(newest.values())
