"""Trial config, budgets, the driver's config mapping, the final evaluation and the worker's RNG checkpointing
(no Ray here: the Ray Train paths run in test_sweep.py)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import torch

from srprior.plan import make_plan
from srprior.schema import RunContext, Trial, trial_config
from srprior.schema_fields import ConfigError
from srprior.search_spaces import get_table
from srprior.trainers import budgets, loop, resources
from srprior.trainers.driver import TRIAL_INDEX, make_trials, train_name
from srprior.trainers.evaluation import _crop, final_metrics, lam_config, training_data
from srprior.trainers.rng import rng_state, set_rng_state
from helpers import train_trial
from srprior.trainers.worker import LocalSession
from srprior.options import SweepOptions


def test_trial_schema_rejects_bad_input_naming_the_field():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['lamda_ap'\]; valid: .*lambda_ap"):
        trial_config(lamda_ap=1e-4)
    with pytest.raises(ConfigError, match="PriorConfig.lambda_ap=-0.1: must be a finite number >= 0"):
        trial_config(lambda_ap=-0.1)
    with pytest.raises(ConfigError, match="ExtractorConfig.n_ssr=0"):
        trial_config(n_ssr=0)
    with pytest.raises(ConfigError, match="ModelConfig.preset='edsr-x': is unknown"):
        trial_config(preset="edsr-x")
    with pytest.raises(ConfigError, match="DataConfig.data_root='data': must be an absolute path"):
        trial_config(data_root="data")
    with pytest.raises(ConfigError, match=r"DataConfig.benchmarks=\('set6',\): has unknown name"):
        trial_config(benchmarks=("set6",))
    with pytest.raises(ConfigError, match="OptimConfig.learning_rate=inf"):
        trial_config(learning_rate=float("inf"))
    with pytest.raises(ConfigError, match="RunContext.use_gpu must be True exactly when gpus_per_worker > 0"):
        RunContext(gpus_per_worker=0.25)
    with pytest.raises(ConfigError, match="cuda_graph needs one worker per trial"):
        RunContext(cuda_graph=True, num_workers=2)
    with pytest.raises(ConfigError, match=r"Trial.seed=-1: must be an integer in \[0, 2\^31\)"):
        Trial(trial_config(), -1)


def test_params_are_every_leaf_and_the_key_is_stable():
    cfg = trial_config(lambda_ap=1e-4, scenario=2, w="0.5", benchmarks="Set5,set14")
    assert cfg.prior.extractor.scenario == "global" and cfg.prior.w == 0.5
    assert cfg.data.benchmarks == ("set5", "set14")
    params = cfg.params()
    assert params["lambda_ap"] == "0.0001" and params["benchmarks"] == "set5,set14" and params["scenario"] == "global"
    assert "tracking_uri" not in params and "seed" not in params
    # the key is a pure function of the values: the same in another process (no hash randomisation, no ids)
    code = "from srprior.schema import Trial, trial_config; print(Trial(trial_config(lambda_ap=1e-4), 3).key)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert out == Trial(trial_config(lambda_ap=1e-4), 3).key
    # every field counts, defaults included: the same science with another default is another run
    assert trial_config(min_std=0.03).hash != trial_config().hash


def test_budgets_define_epochs_and_micro_models():
    thesis, smoke = budgets.get_budget("thesis"), budgets.get_budget("smoke")
    assert budgets.STEPS_PER_EPOCH == 800 // 16 and thesis.science["steps"] == 1000 * 50 == 50_000
    assert (thesis.science["batch"], thesis.science["lr_patch"], thesis.seeds, thesis.micro) == (16, 48, None, False)
    assert thesis.precision == budgets.get_budget("short").precision == "measured"  # bf16 where measured faster
    assert "bf16" not in smoke.science and smoke.precision == "fp32"  # CPU: fp32 (CPU bf16 is real but slow)
    presets = {flat["preset"] for _, _, flat in get_table("4.2").cells()} | {"edsr-t-bn", "edsr-b"}
    assert {p: smoke.preset(p) for p in sorted(presets)} == {
        "edsr-b": "edsr-t-micro", "edsr-t": "edsr-t-micro", "edsr-t-bn": "edsr-t-micro",
        "rcan-t": "rcan-t-micro", "rnan-t": "rnan-t-micro"}
    assert thesis.preset("rcan-t") == "rcan-t"
    with pytest.raises(ValueError, match="unknown budget 'huge'; available: smoke, cpu-hour, short, thesis"):
        budgets.get_budget("huge")
    with pytest.raises(ConfigError, match="budget 'x': ScheduleConfig.steps=0"):
        budgets.Budget("x", "", science={"steps": 0})


def test_resources_cpu_box_and_shared_gpus():
    cpu = resources.plan_resources(16, {("edsr-t-micro", 2)}, cpus=2, gpus=0)
    assert cpu == resources.Resources(workers=1, cpus_per_worker=0.9, gpus_per_worker=0.0, max_concurrent=2)
    more = resources.plan_resources(16, {("edsr-t-micro", 2)}, cpus=2, gpus=0, max_concurrent=4)
    assert (more.max_concurrent, more.cpus_per_worker) == (4, 0.4)  # explicit concurrency wins
    presets = ("edsr-t-micro", "edsr-t", "rnan-t", "rcan-t", "edsr-b")
    shares = {p: resources.plan_resources(64, {(p, 2)}, cpus=16, gpus=1) for p in presets}
    assert {p: (r.gpus_per_worker, r.max_concurrent) for p, r in shares.items()} == {
        "edsr-t-micro": (0.125, 8), "edsr-t": (0.25, 4), "rnan-t": (0.25, 4), "rcan-t": (0.5, 2), "edsr-b": (1.0, 1)}
    assert shares["edsr-t"].cpus_per_worker == 3.9  # (16 - 4 drivers × 0.1) / 4
    mixed = resources.plan_resources(64, {("edsr-t", 2), ("rcan-t", 2)}, cpus=16, gpus=2)
    assert (mixed.gpus_per_worker, mixed.max_concurrent) == (0.5, 4)  # the largest model decides
    ddp = resources.plan_resources(4, {("edsr-b", 2)}, cpus=32, gpus=8, workers=2, gpus_per_trial=2)
    assert (ddp.gpus_per_worker, ddp.max_concurrent) == (1.0, 4)
    with pytest.raises(resources.ResourceError, match="DDP needs one whole GPU per worker"):
        resources.plan_resources(4, {("edsr-t", 2)}, cpus=16, gpus=1, workers=2, gpus_per_trial=0.5)
    with pytest.raises(resources.ResourceError, match="0.2 CPUs cannot hold 1 trials × 4 workers"):
        resources.plan_resources(4, {("edsr-t", 2)}, cpus=0.2, gpus=0, workers=4)


def test_driver_maps_tune_configs_to_typed_trials():
    trial = Trial(trial_config(preset="edsr-t-micro", lambda_ap=1e-4), 2)
    entry = {"trial": trial.to_dict(), "labels": [["4.2", "edsr-t/lambda-1e-4"]], "experiment": "srprior/table-4.2",
             "parent_run_id": "p", "resume_run_id": None}
    ((got, changes),) = make_trials({"trial": {"members": [entry]}}, {})
    assert got == trial and changes["labels"] == (("4.2", "edsr-t/lambda-1e-4"),) and changes["parent_run_id"] == "p"
    science = {"preset": "edsr-t-micro", "steps": 20}
    sampled = {"lambda_ap": 3e-4, "w": "sim", "scenario": "local", "n_ssr": 2}
    ((one, _),) = make_trials({**sampled, TRIAL_INDEX: 1}, science)
    ((other, labels),) = make_trials({**sampled, TRIAL_INDEX: 0}, science)
    assert (one.seed, other.seed) == (1, 0) and one.config == other.config and one.config.schedule.steps == 20
    assert labels["labels"][0][1] == f"cfg-{one.config.hash[:8]}"
    ctx = RunContext(sweep_id="s")
    assert train_name([one], ctx) == f"train-{one.key}" and train_name([one], ctx.replace(retrain=True)).endswith("-s")
    group = train_name([one, other], ctx)
    assert group.startswith("train-group-") and len(group) == 28 and group != train_name([other, one], ctx)


def _micro_trial(seed_: int = 0, **flat) -> Trial:
    smoke = budgets.get_budget("smoke")
    return Trial(trial_config(**{**smoke.science, "preset": "edsr-t-micro", **flat}), seed_)


def test_final_metrics_on_the_embedded_default(tmp_path):
    cfg = _micro_trial().config
    train, val = training_data(cfg)
    assert len(val) == 1 and val[0].lr.shape == (32, 32, 3) and val[0].hr.shape == (64, 64, 3)
    torch.manual_seed(0)
    from srprior.archs import build_model

    model = build_model("edsr-t-micro")
    metrics, tags, files = final_metrics(model, cfg, torch.device("cpu"), tmp_path)
    assert set(metrics) == {"psnr_embedded", "ssim_embedded", "psnr_total", "psnr_ssr", "psnr_poi", "di"}
    from srprior.method.analysis import region_evaluation
    from srprior.trainers.evaluation import eval_sets, region_set

    scale = cfg.model.scale
    region = region_evaluation(model, region_set(eval_sets(cfg), scale)[1], scale).metrics
    assert all(metrics[k] == region[k] for k in ("psnr_total", "psnr_ssr", "psnr_poi"))  # the one implementation
    assert all(np.isfinite(v) for v in metrics.values()) and 0 < metrics["di"] < 100
    assert tags == {"srprior.region_set": "embedded-crop256"}
    assert sorted(p.name for p in files) == ["lam.png", "sr_comparison.png", "ssm.png"]
    assert all(p.stat().st_size > 1000 for p in files)


def test_local_session_resumes_bit_exactly_from_a_checkpoint():
    """Train 4 steps with a checkpoint at 2; a second run started from that checkpoint ends with the same
    weights (model, optimiser, sampler and RNG state all travel in the checkpoint)."""
    trial = _micro_trial(steps=4, val_every=2, di=False, lambda_ap=1e-4)
    ctx = RunContext(ckpt_every=2, log_every=1, figures=False)
    full = LocalSession()
    train_trial(trial, ctx, full)
    first = LocalSession()
    train_trial(Trial(trial_config(**{**trial.config.flat(), "steps": 2}), 0), ctx, first)
    with pytest.raises(ValueError, match="checkpoint holds trial"):  # a checkpoint of another trial is refused
        train_trial(trial, ctx, LocalSession(checkpoint=first.checkpoint))
    half = first.checkpoint
    half["trial"] = trial.to_dict()  # the same science, stopped at step 2
    resumed = LocalSession(checkpoint=half)
    train_trial(trial, ctx, resumed)
    for key, value in full.checkpoint["model"].items():
        assert torch.equal(value, resumed.checkpoint["model"][key]), key
    assert resumed.reports[-1]["val/psnr"] == full.reports[-1]["val/psnr"]
    # model selection survives the resume: the best-validation weights and their step travel in the checkpoint
    assert resumed.checkpoint["best"]["step"] == full.checkpoint["best"]["step"] in (2, 4)
    assert resumed.reports[-1]["best_step"] == full.reports[-1]["best_step"]


def test_model_selection_evaluates_the_best_validation_weights_and_the_last(tmp_path):
    """val_every 1: the best-validation step is known from the logged val/psnr curve; best/… equals an
    evaluation of that step's weights (a run stopped there), final/… the last step's. One selection rule: the
    objective Tune/Optuna see is the best validation PSNR so far (never the last), logged as best/val/psnr."""
    from mlflow.tracking import MlflowClient

    # noisy on purpose (the last is rarely the best): no loss-ratio rule, a bicubic-skip model starts near zero loss
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = RunContext(ckpt_every=1, log_every=1, figures=False, diverge_loss_ratio=0, tracking_uri=uri,
                     experiment="srprior/selection")
    trial = _micro_trial(steps=6, val_every=1, di=False, learning_rate=3e-2)
    session = LocalSession()
    final = train_trial(trial, ctx, session)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("srprior/selection").experiment_id])
    curve = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val/psnr"), key=lambda m: m.step)]
    best_step = 1 + int(np.argmax(curve))
    assert final["best_step"] == best_step and curve[-1] < max(curve)  # the last is not the best here
    assert [r["val/psnr"] for r in session.reports[:-1]] == pytest.approx(np.maximum.accumulate(curve).tolist())
    assert session.reports[-1]["val/psnr"] == final["val/psnr"] == final["best/val/psnr"] == max(curve)
    assert run.data.metrics["best/val/psnr"] == max(curve)
    at_best = train_trial(Trial(trial_config(**{**trial.config.flat(), "steps": best_step}), 0), ctx, LocalSession())
    assert final["best/psnr_embedded"] == pytest.approx(at_best["final/psnr_embedded"], abs=1e-9)
    assert final["final/psnr_embedded"] != final["best/psnr_embedded"] or best_step == 6


def test_validation_and_test_images_are_disjoint_and_logged(tmp_path):
    """Held out: the run logs which images selected the model (val) and which report it (test); they share no
    pixels, and best/psnr_embedded is a test number, not the best point of the val/psnr curve."""
    from srprior import contracts, tracking
    from srprior.data.datasets import DatasetError
    from srprior.data.embedded import TEST, VAL, test_split
    from srprior.trainers.evaluation import eval_sets, held_out

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ctx = RunContext(tracking_uri=uri, experiment="srprior/adhoc", ckpt_every=2, log_every=1, figures=False)
    trial = _micro_trial(steps=4, val_every=1, di=False)
    session = LocalSession()
    final = train_trial(trial, ctx, session)
    client = tracking.client(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("srprior/adhoc").experiment_id])
    images = json.loads(Path(client.download_artifacts(run.info.run_id, contracts.IMAGES_ARTIFACT, str(tmp_path)))
                        .read_text())
    val = [i.split(":")[0] for i in images["val"]]
    test = [i.split(":")[0] for i in images["test"]["embedded"]]
    assert val == [Path(f).stem for f in VAL][:1] and test == [Path(f).stem for f in TEST][:1]
    hashes = lambda ids: {i.rsplit(":", 1)[1] for i in ids}  # noqa: E731
    assert not hashes(images["val"]) & hashes(images["test"]["embedded"])
    curve = [m.value for m in client.get_metric_history(run.info.run_id, "val/psnr")]
    reported = run.data.metrics["best/psnr_embedded"]
    assert reported == pytest.approx(final["best/psnr_embedded"]) and reported not in curve
    # the reported number is the test crop's, recomputed independently from the embedded test split
    crop = _crop(test_split(2)[0], trial.config.data.eval_crop)
    assert eval_sets(trial.config)["embedded"][0].hr.tobytes() == crop.hr.tobytes()
    with pytest.raises(DatasetError, match=r"test images \['coffee:.*'\] are also validation images"):
        held_out(trial.config, [crop])  # a validation list holding a test image is refused before training


def test_learning_rate_schedule_follows_the_milestones():
    from srprior.schema import OptimConfig

    optim = OptimConfig(learning_rate_milestones="2,4", learning_rate_gamma=0.5)
    assert [optim.learning_rate_at(s) for s in range(1, 7)] == [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5]
    with pytest.raises(ConfigError, match="learning_rate_milestones"):
        OptimConfig(learning_rate_milestones=(4, 2))
    trial = _micro_trial(steps=3, val_every=3, di=False, learning_rate_milestones="2", learning_rate=1e-3)
    session = LocalSession()
    train_trial(trial, RunContext(ckpt_every=3, log_every=1, figures=False), session)
    assert session.checkpoint["optimizer"]["param_groups"][0]["lr"] == 5e-4  # step 3 ran at the halved rate


def test_fused_group_equals_separate_trials_and_isolates_a_diverging_member():
    """Two seeds fused give the separate trials' final numbers; a member whose λ_AP overflows float32 (its loss
    turns inf) is frozen and reported failed, and the others are untouched by it."""
    ctx = RunContext(ckpt_every=2, log_every=1, figures=False)
    good = [_micro_trial(steps=3, val_every=3, di=False, lambda_ap=1e-4, seed_=s) for s in (0, 1)]
    bad = Trial(trial_config(**{**good[0].config.flat(), "lambda_ap": 1e39}), 0)
    separate = [train_trial(t, ctx, LocalSession()) for t in good]
    session = LocalSession()
    fused = loop.train([good[0], bad, good[1]], [ctx] * 3, session)
    assert fused[1] == {} and session.reports[-1]["members_failed"] == 1
    for alone, member in zip(separate, (fused[0], fused[2])):
        for key in ("best/psnr_embedded", "best/ssim_embedded", "best/psnr_total", "final/psnr_embedded"):
            assert member[key] == pytest.approx(alone[key], abs=1e-4), key
    assert [m["trial"] for m in session.checkpoint["members"]] == [t.to_dict() for t in (good[0], bad, good[1])]
    with pytest.raises(ValueError, match="group checkpoint holds other members"):
        loop.train(good, [ctx] * 2, LocalSession(checkpoint=session.checkpoint))


def test_readings_reach_the_trial_through_set_and_the_readings_spec():
    """Each readings row differs from the defaults row in exactly its reading; --set reaches every reading;
    with λ_AP = 0 the extractor readings change nothing (bit-exact weights: the plain step never extracts)."""
    from srprior.schema import READINGS

    spec = get_table("readings")
    base = trial_config(**spec.row("edsr-t/defaults").overrides, **spec.defaults).flat()
    for row in spec.rows[2:]:
        flat = trial_config(**{**spec.defaults, **row.overrides}).flat()
        assert {k for k in flat if flat[k] != base[k]} == set(row.overrides) - {"preset"}, row.id
    sets = ["select_n=1", "local_geometry=ring", "similarity=affine", "l1_reduction=sum",
            "di_channels=sum-of-abs", "extra_shave=6", "selection_area=global", "invalid_samples=keep",
            "val_crop=96"]
    config = make_plan(SweepOptions.of({"table": "smoke", "set": sets})).trials[0].trial.config.flat()
    assert {k: str(config[k]) for k in READINGS} == dict(s.split("=") for s in sets)
    ctx = RunContext(ckpt_every=2, log_every=1, figures=False)
    plain = LocalSession()
    train_trial(_micro_trial(steps=2, val_every=2, di=False, lambda_ap=0.0), ctx, plain)
    for reading in ("select_n=1", "local_geometry=ring", "similarity=affine", "selection_area=global",
                    "invalid_samples=keep"):
        key, value = reading.split("=")
        other = LocalSession()
        train_trial(_micro_trial(steps=2, val_every=2, di=False, lambda_ap=0.0, **{key: value}), ctx, other)
        for name, tensor in plain.checkpoint["model"].items():
            assert torch.equal(tensor, other.checkpoint["model"][name]), (reading, name)


def _table_trials() -> list[Trial]:
    from srprior.search_spaces import TABLES

    plan = make_plan(SweepOptions.of({"table": ",".join(TABLES), "budget": "smoke", "seeds": 1,
                      "set": ["steps=2", "val_every=1", "di=false"]}))
    return [t.trial for t in plan.trials]


@pytest.mark.parametrize("trial", _table_trials(), ids=lambda t: f"{t.config.model.preset}-{t.config.hash[:6]}")
def test_every_table_row_trains_two_steps_through_the_worker(trial):
    """fast_dev_run over experiments: every distinct row of every table (micro presets, smoke budget) runs the
    worker's training function for 2 steps without Ray; its final metrics are finite."""
    session = LocalSession()
    final = train_trial(trial, RunContext(ckpt_every=1, log_every=1, figures=False), session)
    assert session.checkpoint["step"] == 2 and [r["step"] for r in session.reports[:2]] == [1, 2]
    assert {f"best/{m}" for m in ("psnr_embedded", "ssim_embedded", "psnr_total", "psnr_ssr", "psnr_poi")} <= set(final)
    assert all(math.isfinite(v) for k, v in final.items() if not k.startswith("system/"))


def test_crops_keep_lr_and_hr_aligned():
    from srprior.data.datasets import ImagePair

    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)
    crop = _crop(ImagePair("x", hr, lr), 16)
    assert np.array_equal(crop.lr, lr[7:23, 17:33]) and np.array_equal(crop.hr, hr[21:69, 51:99])
    assert _crop(ImagePair("x", hr, lr), 64).lr.shape == lr.shape  # larger than the image: whole image


def test_lam_batches_rnan_path_points_within_memory():
    small, large = [np.zeros((48, 48, 3), np.uint8)], [np.zeros((128, 128, 3), np.uint8)]
    assert lam_config("edsr-t", large).chunk == lam_config("rnan-t", small).chunk == 10
    assert lam_config("rnan-t", large).chunk == 1


def test_rng_state_round_trip_replays_every_stream():
    gen = torch.Generator().manual_seed(5)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = rng_state(gen)
    draws = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    set_rng_state(state, gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2] and torch.equal(draws[3], again[3])
