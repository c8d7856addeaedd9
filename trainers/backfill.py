"""Evaluate on demand: a finished run gains the benchmark sets it lacks from its stored checkpoint, no retraining.

A run's key does not depend on which benchmark folders existed when it finished, so a set built later
(HardCases-R after its selectors trained, a user's new folder) would never reach reused runs and their claims
would silently fall back to a stand-in. `backfill` finds, for each FINISHED run, the sets present under its
data root (or `data_root` when given) that it has no `best/psnr_<set>` for, loads the run's newest checkpoint
(its best-validation weights, what `best/…` reports, and the last step's for `final/…`), evaluates exactly as
the trainer's final evaluation does (trainers/evaluation.py: same crops, shave and bicubic reference) and logs
the metrics into the same MLflow run, tagged `srprior.evaluated_later`. Table 4.7's region metrics keep the set
they were measured on (tag srprior.region_set).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from srprior import contracts
from srprior.errors import UserError



class BackfillError(UserError, ValueError):
    """A run to evaluate has no usable checkpoint; the message names the run and the fix."""


def checkpoint_index(output: Path) -> dict[str, tuple[Path, dict]]:
    """Run key -> (state.pt, its member dict) over the newest checkpoint of every Ray Train run under `output`."""
    import torch

    from srprior.trainers.checkpoints import find_checkpoints, load_state, member_states

    index: dict[str, tuple[Path, dict]] = {}
    for path in find_checkpoints(output):
        try:
            state = load_state(path, torch.device("cpu"))
        except Exception:  # noqa: BLE001 - an unreadable file is simply not a source; the caller names the run
            continue
        for member in member_states(state):
            if "trial" in member:
                from srprior.schema import Trial

                index.setdefault(Trial.from_dict(member["trial"]).key, (path, member))
    return index


def missing_sets(cfg: Any, logged: dict[str, float], data_root: str | None = None,
                 wanted: tuple[str, ...] | None = None) -> tuple[Any, list[str]]:
    """(config to evaluate with, the sets of `wanted` (default: the run's own `benchmarks`) present under its data
    root that the run has no metric for). A run that asked for Set5 only never gains Set14 behind its back."""
    root = data_root or cfg.data.data_root
    if root is None:
        return cfg, []
    wanted = wanted or cfg.data.benchmarks
    missing = [name for name in _present(Path(root)) if name in wanted
               and any(f"{contracts.SELECTED}psnr_{n}" not in logged for n in _with_control(root, name))]
    if not missing:
        return cfg, []
    data = dataclasses.replace(cfg.data, data_root=str(Path(root).resolve()), benchmarks=tuple(missing))
    return dataclasses.replace(cfg, data=data), missing


def _with_control(root: str | Path, name: str) -> list[str]:
    """A set and, for HardCases-R built with one, its control tiles (evaluated with it: trainers.evaluation)."""
    from srprior.trainers.evaluation import rebuilt_dir

    if name == "hardcases_r" and (rebuilt_dir(Path(root)) / contracts.CONTROL_DIR / "HR").is_dir():
        return [name, contracts.CONTROL_SET]
    return [name]


def _present(root: Path) -> list[str]:
    folders = {p.name.lower() for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    return [name for name, folder in contracts.BENCHMARK_DIRS.items() if folder.lower() in folders]


def evaluate_member(member: dict, cfg: Any) -> dict[str, float]:
    """best/, final/ and bicubic/ PSNR and SSIM of a checkpoint member on `cfg`'s sets (missing_sets): the
    trainer's own evaluation (trainers/evaluation.selected_metrics) of the restored weights."""
    import torch

    from srprior.trainers.checkpoints import member_model
    from srprior.trainers.evaluation import selected_metrics

    last, _ = member_model(member, "last")
    best = (member.get("best") or {}).get("model")
    return selected_metrics(last, best, cfg, torch.device("cpu"), full=False)[0]


def backfill(uri: str, output: Path, runs: dict[str, Any], data_root: str | None = None,
             only: tuple[str, ...] | None = None) -> list[str]:
    """Evaluate every FINISHED run of `runs` (key -> MLflow run) on the sets it lacks; one line per run changed.
    only: restrict to these benchmark names. Raises BackfillError for a run that needs it and has no checkpoint."""
    from mlflow.entities import Metric, RunTag

    from srprior import tracking

    client, index, lines = tracking.client(uri), None, []
    for key, run in sorted(runs.items()):
        if run.info.status != "FINISHED":
            continue
        cfg, sets = missing_sets(run_config(run), run.data.metrics, data_root, only)
        if not sets:
            continue
        index = checkpoint_index(output) if index is None else index
        if key not in index:
            raise BackfillError(f"run {run.info.run_id} ({key}) lacks {', '.join(sets)} and has no checkpoint under "
                                f"{output}/ray; pass the sweep's --output-dir, or train it again with --retrain")
        metrics = evaluate_member(index[key][1], cfg)
        step = int(run.data.metrics.get(contracts.STEP, 0))
        client.log_batch(run.info.run_id, metrics=[Metric(k, v, 0, step) for k, v in metrics.items()],
                         tags=[RunTag(contracts.EVALUATED_LATER, ",".join(sorted({*_later(run), *sets})))])
        lines.append(f"{run.data.tags.get(contracts.ROW, key)} seed {run.data.tags.get(contracts.SEED, '?')}: "
                     f"+{', '.join(sets)} from {index[key][0].parent.name}")
    return lines


def _later(run: Any) -> list[str]:
    text = run.data.tags.get(contracts.EVALUATED_LATER, "")
    return [s for s in text.split(",") if s]


def run_config(run: Any) -> Any:
    """The run's TrialConfig from its params (every schema leaf is one, TrialConfig.params; None is "None")."""
    from srprior.schema import trial_config

    flat = {k: v for k, v in run.data.params.items() if k != "seed" and v != "None"}
    return trial_config(f"run {run.info.run_id}", **flat)
