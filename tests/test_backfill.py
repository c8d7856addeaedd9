"""Evaluate on demand: a finished run gains a benchmark set built after it finished, from its stored checkpoint,
into the same MLflow run (no new run, no training), with the numbers the trainer's own evaluation gives."""

from __future__ import annotations

import pytest
import torch

from srprior import contracts, tracking
from srprior.cli import main
from srprior.schema import RunContext, Trial, trial_config
from srprior.contracts import EVALUATED_LATER
from srprior.trainers.backfill import BackfillError, backfill, evaluate_member, missing_sets
from helpers import train_trial
from srprior.trainers.worker import LocalSession


@pytest.fixture()
def finished(data_root, tmp_path):
    """A trial trained on Set5 (one 32×32 crop), its checkpoint where a sweep keeps it, and its store."""
    bench = tmp_path / "bench"
    bench.mkdir()
    for name in ("Set5", "LAM_demo"):
        (bench / name).symlink_to(data_root / name)
    cfg = trial_config(preset="edsr-t-micro", lambda_ap=0.0, steps=2, batch=2, lr_patch=16, val_every=1,
                       val_images=1, eval_crop=32, max_eval_images=1, di=False, data_root=str(bench),
                       benchmarks="set5,hardcases_r")
    trial, uri = Trial(cfg, 0), f"sqlite:///{tmp_path}/mlflow.db"
    session = LocalSession()
    ctx = RunContext(tracking_uri=uri, experiment="srprior/table-4.2", ckpt_every=2, log_every=1, figures=False)
    train_trial(trial, ctx, session)
    ckpt = tmp_path / "out" / "ray" / "train" / f"train-{trial.key}" / "checkpoint_000001" / "state.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(session.checkpoint, ckpt)
    return trial, uri, bench, tmp_path / "out", session.checkpoint


def test_a_set_built_later_reaches_the_finished_run(finished, data_root):
    trial, uri, bench, output, state = finished
    before = tracking.runs_by_key(uri)
    assert list(before) == [trial.key] and "best/psnr_hardcases_r" not in before[trial.key].data.metrics
    assert backfill(uri, output, before) == []  # nothing new under the data root: nothing to do
    (bench / "HardCases-R").symlink_to(data_root / "Set14")  # "built" after the run finished
    lines = backfill(uri, output, before)
    assert len(lines) == 1 and "+hardcases_r" in lines[0]
    after = tracking.runs_by_key(uri)
    client = tracking.client(uri)
    exp = client.get_experiment_by_name("srprior/table-4.2").experiment_id
    assert len(client.search_runs([exp])) == 1  # the same run, no new one
    run = after[trial.key]
    assert run.info.run_id == before[trial.key].info.run_id and run.info.status == "FINISHED"
    assert run.data.tags[EVALUATED_LATER] == "hardcases_r"
    # the trainer's own evaluation of the checkpoint's best weights on the new set
    cfg, sets = missing_sets(trial.config, before[trial.key].data.metrics)
    assert sets == ["hardcases_r"]
    expected = evaluate_member(state, cfg)
    assert not any("set5" in k for k in expected)  # only the set the run lacked
    for kind in ("psnr", "ssim"):
        for prefix in (contracts.SELECTED, contracts.LAST, contracts.BICUBIC):
            assert run.data.metrics[f"{prefix}{kind}_hardcases_r"] == pytest.approx(expected[f"{prefix}{kind}_hardcases_r"])
    assert run.data.metrics["best/psnr_set5"] == before[trial.key].data.metrics["best/psnr_set5"]  # untouched
    assert backfill(uri, output, after) == []  # idempotent


def test_a_run_without_its_checkpoint_is_one_clear_line(finished, data_root, tmp_path, capsys):
    trial, uri, bench, output, _ = finished
    (bench / "HardCases-R").symlink_to(data_root / "Set14")
    with pytest.raises(BackfillError, match=rf"\({trial.key}\) lacks hardcases_r and has no checkpoint under "):
        backfill(uri, tmp_path / "elsewhere", tracking.runs_by_key(uri))
    assert main(["evaluate", "--sweep", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sweep nope: no table sweep of that name" in err


def test_a_control_set_built_later_reaches_the_run_with_hardcases_r(finished, data_root):
    """A HardCases-R build with its control tiles: a finished run gains both (the control is evaluated with
    HardCases-R), with the numbers the trainer's own evaluation gives."""
    import shutil

    trial, uri, bench, output, state = finished
    rebuilt = bench / "HardCases-R"
    shutil.copytree(data_root / "Set14" / "HR", rebuilt / "HR")
    shutil.copytree(data_root / "Set5" / "HR", rebuilt / "control" / "HR")
    before = tracking.runs_by_key(uri)
    lines = backfill(uri, output, before)
    assert len(lines) == 1 and "+hardcases_r" in lines[0]
    run = tracking.runs_by_key(uri)[trial.key]
    cfg, sets = missing_sets(trial.config, before[trial.key].data.metrics)
    assert sets == ["hardcases_r"]
    expected = evaluate_member(state, cfg)
    assert set(expected) >= {"best/psnr_hardcases_rc", "final/ssim_hardcases_rc", "bicubic/psnr_hardcases_rc"}
    for key in ("best/psnr_hardcases_r", "best/psnr_hardcases_rc", "bicubic/ssim_hardcases_rc"):
        assert run.data.metrics[key] == pytest.approx(expected[key])
    assert backfill(uri, output, tracking.runs_by_key(uri)) == []  # idempotent
