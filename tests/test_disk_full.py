"""A full disk, met for real: a 1 MiB tmpfs filled to the last page (root only; skipped elsewhere). Every writer
a sweep has — torch.save of a checkpoint, pyarrow's copy into Train storage, SQLite — names ENOSPC the way
srprior.trainers.health.disk_full recognises, and the watchdog's probe and Tune stopper stop the sweep."""

from __future__ import annotations

import errno
import sqlite3
import subprocess

import pytest
import torch

from srprior import contracts
from srprior.trainers import checkpoints
from srprior.trainers.health import disk_full
from srprior.watchdog import Watchdog, probe


@pytest.fixture
def full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            for size in [65536] * 20 + [4096] * 300:  # more than 1 MiB: the disk ends full
                try:
                    f.write(b"\0" * size)
                except OSError:
                    continue
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_every_writer_reports_a_full_disk_as_such(full_disk, tmp_path):
    with pytest.raises(OSError) as saved:
        checkpoints.write({"x": torch.zeros(100_000)}, full_disk)  # torch's own error is an opaque RuntimeError
    assert saved.value.errno == errno.ENOSPC and disk_full(saved.value).startswith("[Errno 28] No space left")
    import pyarrow.fs

    (tmp_path / "state.pt").write_bytes(b"\0" * 300_000)
    with pytest.raises(OSError) as copied:  # what ray.train.report's upload into storage raises
        pyarrow.fs.copy_files(str(tmp_path / "state.pt"), str(full_disk / "ckpt.pt"))
    assert "No space left on device" in disk_full(copied.value)
    (full_disk / "filler").unlink()
    (full_disk / "filler2").write_bytes(b"\0" * (1024 * 1024 - 8192))  # room for the empty store only
    db = sqlite3.connect(full_disk / "mlflow.db")
    with pytest.raises(sqlite3.OperationalError) as store:
        db.execute("CREATE TABLE t (x BLOB)")
        for _ in range(100):
            db.execute("INSERT INTO t VALUES (?)", (b"\0" * 65536,))
            db.commit()
    db.close()
    wrapped = RuntimeError("API request to endpoint /api/2.0/mlflow/runs/log-batch failed")
    wrapped.__cause__ = store.value  # as MLflow's client raises what the server answered
    assert disk_full(wrapped) == "database or disk is full"
    assert disk_full(RuntimeError("connection refused")) is None


def test_the_watchdog_stops_the_sweep_on_a_full_disk_or_a_trial_that_met_one(full_disk, tmp_path, monkeypatch,
                                                                              caplog):
    monkeypatch.setenv("SRPRIOR_MIN_FREE_MB", "0")  # the guard off: only the disk being full stops a sweep
    import logging

    from srprior.watchdog import TUNE_STATE_LOGGER

    def tune_cannot_save(exc: BaseException) -> None:
        try:
            raise exc
        except OSError:
            logging.getLogger(TUNE_STATE_LOGGER).error("Saving experiment state failed", exc_info=True)
    assert probe(full_disk) == f"disk full: {full_disk}: No space left on device"
    assert probe(tmp_path) is None and list(tmp_path.iterdir()) == [full_disk]  # the probe cleans up
    with Watchdog(None, folders=(tmp_path,)) as watch:
        stopper = watch.stopper()
        assert watch.check() is None and not stopper.stop_all()
        import shutil

        free = shutil.disk_usage(tmp_path).free  # a checkpoint bigger than what is free: the next cannot be kept
        assert stopper("t0", {"step": 2, contracts.CHECKPOINT_BYTES: free // 2}) is False and watch.check() is None
        stopper("t0", {"step": 2, contracts.CHECKPOINT_BYTES: free + 2**30})
        assert watch.need == free + 2**30 and watch.check().startswith(f"disk full: {tmp_path} has ")
        assert "less than a checkpoint needs" in watch.check() and not stopper.stop_all()  # run() sets reason
        watch.need = 0
        assert stopper("t1", {"step": 3, contracts.STOP_SWEEP: "disk full: x"}) is False
        assert watch.reason == "disk full: x (in trial t1)" and stopper.stop_all()
        with caplog.at_level(logging.ERROR, logger=TUNE_STATE_LOGGER):
            tune_cannot_save(OSError(errno.ENOSPC, "No space left on device"))  # the sweep's line says it
            tune_cannot_save(OSError(errno.EACCES, "Permission denied"))  # anything else is Tune's to say
        assert [r.exc_info[1].errno for r in caplog.records] == [errno.EACCES]
    with Watchdog(None, folders=(full_disk,)) as watch:
        assert watch.check() == f"disk full: {full_disk}: No space left on device"


def _train_fn_reporting_after_a_failed_upload(config: dict) -> None:
    """A Train worker whose checkpoint (2 MiB) cannot be uploaded to its 1 MiB storage, then reports again."""
    from srprior.trainers.worker import RaySession

    session = RaySession()
    try:
        session.report({"step": 1}, {"x": torch.zeros(2**19)})
    except Exception as exc:  # noqa: BLE001 - what Ray raised for the upload
        assert disk_full(exc), exc
    else:
        raise AssertionError("the upload to a full disk succeeded")
    session.report({"step": 2, "after_failure": 1}, None)  # used to wait forever for the failed report's slot


class _Reports:
    """A Train callback (it runs in the controller) writing the reports Train took into a file."""

    def __init__(self, path):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(f"{metrics[0]['step']}\n")

    def after_exception(self, run_context, worker_exceptions) -> None:
        pass


@pytest.mark.slow
def test_a_report_after_a_failed_checkpoint_upload_is_taken(tmp_path):
    """Ray 2.60 gives a report its slot in the worker's report order before it uploads the checkpoint; an upload
    that fails on a full disk never gave it back, and the report that was to stop the sweep waited forever. With
    RaySession's hand-off the second report reaches Train: the run ends with its metrics."""
    ray = pytest.importorskip("ray")
    import ray.train
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import a test module
    try:
        from srprior.sweep.launch import start_local_ray

        start_local_ray(1, verbose=False)  # the dashboard on: Train V2 cleans up through the State API
        callback = type("Reports", (_Reports, ray.train.UserCallback), {})(tmp_path / "taken")
        result = DataParallelTrainer(
            _train_fn_reporting_after_a_failed_upload,
            scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
            run_config=ray.train.RunConfig(name="upload", storage_path=str(disk), callbacks=[callback],
                                           failure_config=ray.train.FailureConfig(max_failures=0)),
        ).fit()  # a report that timed out (AFTER_FAILURE_S) would be an error here
        assert result.error is None and (tmp_path / "taken").read_text() == "2\n"
    finally:
        ray.shutdown()
        subprocess.run(["umount", "-l", str(disk)], check=True)
