"""Trial config, budgets, the driver's config mapping, the final evaluation and the worker's RNG checkpointing
(no Ray here: the Ray Train paths run in test_sweep.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from srprior.search_spaces import get_table
from srprior.trainers import budgets, resources
from srprior.trainers.config import NON_PARAMS, TrialConfig
from srprior.trainers.driver import TRIAL_INDEX, search_row_id, trial_dict
from srprior.trainers.evaluation import _crop, final_metrics, lam_config, training_data
from srprior.trainers.worker import _rng_state, _set_rng_state


def test_trial_config_rejects_bad_input_naming_the_field():
    with pytest.raises(ValueError, match=r"unknown trial-config key\(s\) \['lamda_ap'\]; valid keys: .*lambda_ap"):
        TrialConfig.from_dict({"lamda_ap": 1e-4})
    with pytest.raises(ValueError, match="lambda_ap=-0.1: must be a finite number >= 0"):
        TrialConfig(lambda_ap=-0.1)
    with pytest.raises(ValueError, match="n_ssr=0"):
        TrialConfig(n_ssr=0)
    with pytest.raises(ValueError, match="preset='edsr-x' is unknown"):
        TrialConfig(preset="edsr-x")
    with pytest.raises(ValueError, match="data_root='data' must be an absolute path"):
        TrialConfig(data_root="data")
    with pytest.raises(ValueError, match=r"benchmarks=\('set6',\) has unknown name"):
        TrialConfig(benchmarks=("set6",))
    with pytest.raises(ValueError, match="use_gpu=False must be True exactly when gpus_per_worker > 0"):
        TrialConfig(gpus_per_worker=0.25)
    with pytest.raises(ValueError, match="cuda_graph=True needs num_workers == 1"):
        TrialConfig(cuda_graph=True, num_workers=2)


def test_trial_config_params_are_the_science_not_the_plumbing():
    cfg = TrialConfig(table="4.2", row="edsr-t/lambda-1e-4", seed=3, lambda_ap=1e-4, scenario=2, w="0.5",
                      tracking_uri="http://h:5000", sweep_id="s", benchmarks=("Set5", "set14"))
    assert cfg.scenario == "global" and cfg.w == 0.5 and cfg.benchmarks == ("set5", "set14")
    params = cfg.params()
    assert not set(NON_PARAMS) & set(params)
    assert params["lambda_ap"] == "0.0001" and params["seed"] == "3" and params["benchmarks"] == "set5,set14"
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


def test_budgets_define_epochs_and_micro_models():
    thesis, smoke = budgets.get_budget("thesis"), budgets.get_budget("smoke")
    assert budgets.STEPS_PER_EPOCH == 800 // 16 and thesis.steps == 1000 * 50 == 50_000
    assert (thesis.batch, thesis.patch, thesis.seeds, thesis.micro) == (16, 48, None, False)
    presets = {t["preset"] for t in get_table("4.2").trial_configs()} | {"edsr-t-bn", "edsr-b"}
    assert {p: smoke.preset(p) for p in sorted(presets)} == {
        "edsr-b": "edsr-t-micro", "edsr-t": "edsr-t-micro", "edsr-t-bn": "edsr-t-micro",
        "rcan-t": "rcan-t-micro", "rnan-t": "rnan-t-micro"}
    assert thesis.preset("rcan-t") == "rcan-t"
    TrialConfig(preset="edsr-t-micro", **smoke.trial_fields())
    with pytest.raises(ValueError, match="unknown budget 'huge'; available: smoke, short, thesis"):
        budgets.get_budget("huge")


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
    with pytest.raises(resources.SweepError, match="DDP needs one whole GPU per worker"):
        resources.plan_resources(4, {("edsr-t", 2)}, cpus=16, gpus=1, workers=2, gpus_per_trial=0.5)
    with pytest.raises(resources.SweepError, match="0.2 CPUs cannot hold 1 trials × 4 workers"):
        resources.plan_resources(4, {("edsr-t", 2)}, cpus=0.2, gpus=0, workers=4)


def test_driver_maps_tune_configs_to_trial_configs():
    base = {"steps": 20, "lambda_ap": 0.0, "table": "ignored"}
    row = {"table": "4.2", "row": "edsr-t/lambda-1e-4", "seed": 2, "lambda_ap": 1e-4}
    assert trial_dict({"trial": row}, base) == {"steps": 20, **row}
    sampled = {"lambda_ap": 3e-4, "w": "sim", "scenario": "local", "n_ssr": 2, "preset": "edsr-t", "scale": 2}
    one = trial_dict({**sampled, TRIAL_INDEX: 1}, {"table": "edsr-t"})
    other = trial_dict({**sampled, TRIAL_INDEX: 0}, {"table": "edsr-t"})
    assert one["seed"] == 1 and other["seed"] == 0 and one["row"] == other["row"] == search_row_id(sampled)
    assert search_row_id({**sampled, "n_ssr": 3}) != one["row"] and one["row"].startswith("cfg-")


def test_final_metrics_on_the_embedded_default(tmp_path):
    fields = {**budgets.get_budget("smoke").trial_fields(), "figures": True}
    cfg = TrialConfig(preset="edsr-t-micro", **fields)
    train, val = training_data(cfg)
    assert len(val) == 1 and val[0].lr.shape == (48, 48, 3) and val[0].hr.shape == (96, 96, 3)
    torch.manual_seed(0)
    from srprior.archs import build_model

    metrics, tags, files = final_metrics(build_model("edsr-t-micro"), cfg, val, torch.device("cpu"), tmp_path)
    assert set(metrics) == {"psnr_embedded", "ssim_embedded", "psnr_total", "psnr_ssr", "psnr_poi", "di"}
    assert all(np.isfinite(v) for v in metrics.values()) and 0 < metrics["di"] < 100
    assert tags == {"srprior.region_set": "embedded-crop256"}
    assert sorted(p.name for p in files) == ["lam.png", "sr_embedded-crop256_0.png", "ssm.png"]
    assert all(p.stat().st_size > 1000 for p in files)


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
    state = _rng_state(gen)
    draws = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    _set_rng_state(state, gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1])
    assert draws[2] == again[2] and torch.equal(draws[3], again[3])
