"""Failures are loud, early and final: diverging trials end FAILED (never a value), errors cross processes intact,
data is checked before Ray, the watchdog notices a dead tracking server. No Ray here (test_sweep_faults.py has
the Ray sessions); real MLflow stores, real images, real processes."""

from __future__ import annotations

import inspect
import math
import pickle
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srprior import contracts, errors, preflight, tracking
from srprior.plan import make_plan
from srprior.report.model import build_report
from srprior.report.render import to_markdown
from srprior.schema import RunContext, Trial, trial_config
from srprior.search_spaces import get_table
from srprior.trainers.health import end_failed, is_diverged
from helpers import train_trial
from srprior.trainers.worker import LocalSession
from srprior.options import SweepOptions

DATA = Path(os.environ.get("SRPRIOR_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")  # as CI lays it


def _example(cls: type[BaseException]) -> BaseException:
    """An instance built through the class's own constructor, every argument a string."""
    if all("__init__" not in vars(c) for c in cls.__mro__ if c.__module__.startswith("srprior")):  # message only
        return cls("/data/x.png: broken; fix it")
    params = [p for p in inspect.signature(cls.__init__).parameters.values()][1:]
    return cls(*(f"/data/{p.name}.png" for p in params if p.default is p.empty))


def _project_error_classes() -> list[type[BaseException]]:
    """Every *Error class defined in the project's modules (imported by walking the packages); internal signals
    that never reach a user (CorruptCheckpoint, ...) are not named *Error."""
    import importlib
    import pkgutil

    import srprior.search_spaces
    import srprior.trainers

    found, packages = {}, (srprior, srprior.trainers, srprior.search_spaces)  # the last two are mapped folders
    infos = [i for pkg in packages for i in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for info in infos:
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name \
                    and obj.__name__.endswith("Error"):
                found[obj.__qualname__] = obj
    return [found[name] for name in sorted(found)]


PROJECT_ERRORS = _project_error_classes()


def test_every_project_error_is_a_user_error_and_nothing_else_is():
    """One base: a project error class that forgot UserError would print a traceback instead of one line."""
    assert {"SweepError", "BackfillError", "ConfigError", "ImageError"} <= {c.__name__ for c in PROJECT_ERRORS}
    assert [c.__name__ for c in PROJECT_ERRORS if not issubclass(c, errors.UserError)] == []
    assert errors.user_message(KeyError("x")) is None and errors.user_message(RuntimeError("bug")) is None


@pytest.mark.parametrize("cls", PROJECT_ERRORS, ids=lambda c: c.__name__)
def test_every_project_error_crosses_a_process_boundary(cls):
    """Ray pickles a worker's exception to the driver: ImageError used to fail there ('missing 1 required
    positional argument') and the real error was lost."""
    exc = _example(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.args == exc.args
    assert errors.user_message(back) == " ".join(str(exc).split())  # printed whole, as one line


def _smoke_trial(**flat) -> tuple[Trial, str]:
    plan = make_plan(SweepOptions.of({"table": "smoke", "seeds": 1, "set": ["steps=6", "val_every=3", "di=false"]}))
    planned = plan.trials[-1]
    return Trial(trial_config(**{**planned.trial.config.flat(), **flat}), 0), planned.labels[0][1]


def _ctx(uri: str, row: str) -> RunContext:
    return RunContext(tracking_uri=uri, experiment="srprior/table-smoke", labels=(("smoke", row),), log_every=2,
                      ckpt_every=4, figures=False, sweep_id="local")


def test_a_diverging_trial_ends_failed_and_the_report_marks_it(tmp_path):
    """λ_AP = 1e39 overflows float32 at the first step: the loss is inf. The trial stops at the next check (log
    step 2), logs no point, writes no checkpoint, and its run ends FAILED with the step and the reason; the
    report counts it as failed (INCOMPLETE), never as a value."""
    uri = tracking.default_tracking_uri(tmp_path)
    bad, row = _smoke_trial(lambda_ap=1e39)
    good, _ = _smoke_trial(lambda_ap=0.0)
    session = LocalSession()
    assert train_trial(bad, _ctx(uri, row), session) == {}
    assert session.checkpoint is None and session.reports == [
        {"step": 2, contracts.OBJECTIVE: pytest.approx(math.nan, nan_ok=True), "members_failed": 1}]
    healthy = train_trial(good, _ctx(uri, "edsr-t-micro/baseline"), LocalSession())
    assert math.isfinite(healthy[f"{contracts.SELECTED}psnr_embedded"])
    runs = tracking.runs_by_key(uri)
    run = runs[bad.key]
    assert (run.info.status, run.data.tags[contracts.FAILURE]) == ("FAILED", "step 1: non-finite loss")
    assert is_diverged(run.data.tags[contracts.FAILURE]) and not is_diverged("step 0: ImageError: x")
    client = tracking.client(uri)
    assert [client.get_metric_history(run.info.run_id, k) for k in contracts.CURVES] == [[]] * 4
    assert not [k for k in run.data.metrics if "psnr" in k or "ssim" in k]
    cells = [("edsr-t-micro/baseline", 0, good.key), (row, 0, bad.key)]
    report = build_report(get_table("smoke"), uri, cells)
    assert (report.failed, report.missing) == (1, 0)
    md = to_markdown(report)
    assert "INCOMPLETE: 1 failed and 0 unfinished or missing run(s) are not in the table." in md
    line = next(x for x in md.splitlines() if x.startswith("| EDSR-T | w/ ours"))
    assert "| 0/1 |" in line and "±" not in line.split("(")[0]  # no value for the failed cell


@pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="needs the shared benchmark data")
def test_a_data_error_inside_a_worker_ends_the_run_failed_with_the_file(tmp_path):
    """What the Ray entry point does with an error that would repeat (srprior.trainers.health.end_failed): the
    run ends FAILED naming the file, one report, no exception for Train to retry."""
    root = tmp_path / "data"
    shutil.copytree(DATA / "Set5", root / "Set5")
    (root / "Set5" / "HR" / "aaa.png").write_bytes(b"not an image")
    uri = tracking.default_tracking_uri(tmp_path)
    trial, row = _smoke_trial(data_root=str(root), benchmarks="set5", max_eval_images=1)
    ctx, session = _ctx(uri, row), LocalSession()
    from srprior.data.io import ImageError

    with pytest.raises(ImageError) as caught:
        train_trial(trial, ctx, session)
    end_failed([trial], [ctx], LocalSession(), pickle.loads(pickle.dumps(caught.value)))
    run = tracking.runs_by_key(uri)[trial.key]
    assert run.info.status == "FAILED"
    assert run.data.tags[contracts.FAILURE].startswith(f"step 0: ImageError: {root / 'Set5/HR/aaa.png'}: not a "
                                                       "readable")
    assert not is_diverged(run.data.tags[contracts.FAILURE])  # --resume retries it (the file may be fixed)


def _div2k(root: Path, lr_side: int = 12) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("valid", 1)):
        (root / f"DIV2K_{split}_HR").mkdir(parents=True)
        (root / f"DIV2K_{split}_LR_bicubic" / "X2").mkdir(parents=True)
        for i in range(n):
            hr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(hr).save(root / f"DIV2K_{split}_HR" / f"{i:04d}.png")
            lr = rng.integers(0, 256, (lr_side, 32, 3), dtype=np.uint8)
            Image.fromarray(lr).save(root / f"DIV2K_{split}_LR_bicubic" / "X2" / f"{i:04d}x2.png")


def test_preflight_reads_what_the_trials_read(tmp_path):
    """A DIV2K root is two sources (train with the patch check, valid); a wrong-size LR file is named."""
    _div2k(tmp_path / "ok", lr_side=32)
    cfg = trial_config(preset="edsr-t-micro", train_root=str(tmp_path / "ok"), lr_patch=24)
    assert preflight.check_data([cfg, cfg]) == 2
    _div2k(tmp_path / "bad", lr_side=12)
    cfg = trial_config(preset="edsr-t-micro", train_root=str(tmp_path / "bad"), lr_patch=24)
    with pytest.raises(preflight.PreflightError, match=r"data check before training: .*0000x2.png: LR is 32x12 "
                                                       r"but HR 0000.png \(64x64\) at x2 needs 32x32"):
        preflight.check_data([cfg])


@pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="needs the shared benchmark data")
def test_preflight_checks_benchmarks_and_lam_images(tmp_path):
    cfg = trial_config(preset="edsr-t-micro", data_root=str(DATA), benchmarks="set5,set14", max_eval_images=1)
    assert preflight.check_data([cfg]) == 3  # Set5, Set14, LAM demo
    root = tmp_path / "data"
    shutil.copytree(DATA / "Set5", root / "Set5")
    cfg = trial_config(preset="edsr-t-micro", data_root=str(root), benchmarks="set5", max_eval_images=1)
    with pytest.raises(preflight.PreflightError, match="LAM_demo/.*: no such image file"):
        preflight.check_data([cfg])


@pytest.mark.slow
def test_watchdog_reports_a_dead_server_and_a_full_disk(tmp_path):
    from srprior.watchdog import StopOnFailure, Watchdog

    with tracking.TrackingServer(tracking.default_tracking_uri(tmp_path), tracking.artifacts_dir(tmp_path)) as srv:
        with Watchdog(srv.url, srv.proc, srv.log, (tmp_path,)) as watch:
            stopper = pickle.loads(pickle.dumps(watch.stopper()))  # Tune pickles it with the experiment
            assert watch.check() is None and not stopper.stop_all()
            srv.proc.kill()
            srv.proc.wait()
            assert watch.check() == f"the MLflow tracking server (pid {srv.proc.pid}) exited with code -9; log " \
                                    f"{srv.log}"
            watch.join(timeout=10)
            assert watch.reason is not None and stopper.stop_all()
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        assert Watchdog(None, folders=(mount,)).check().startswith(f"{mount}: only 1.0 MiB free on its disk")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert not StopOnFailure("gone").stop_all()


class _Payload:
    """A pickle that runs code when loaded: what a tampered checkpoint on shared storage could hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_load_without_running_code(tmp_path):
    """trainers.checkpoints.load_state reads with weights_only=True: a real checkpoint (model, Adam, numpy RNG state)
    loads; one carrying a code-running pickle is refused and its code never runs."""
    import torch

    from srprior.trainers.checkpoints import CHECKPOINT_FILE, load_state

    trial, _ = _smoke_trial(steps=2, val_every=2)
    session = LocalSession()
    train_trial(trial, RunContext(ckpt_every=2, log_every=1, figures=False), session)
    torch.save(session.checkpoint, tmp_path / CHECKPOINT_FILE)
    state = load_state(tmp_path / CHECKPOINT_FILE, torch.device("cpu"))
    assert state["step"] == 2 and state["trial"] == trial.to_dict()
    marker = tmp_path / "code-ran"
    torch.save({**session.checkpoint, "extra": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_state(tmp_path / "evil.pt", torch.device("cpu"))
    assert not marker.exists()
