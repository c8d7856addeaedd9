"""HardCases-R: the selection rule on hand-made scores, checkpoints in the training worker's format (trained for
a few real steps), and a tiny real build from Urban100 images: layout, manifest, determinism."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from srprior.cli import main
from srprior.contracts import SELECTOR_SEEDS
from srprior.data.datasets import benchmark
from srprior.trainers.checkpoints import find_checkpoints
from helpers import load_checkpoint_model
from srprior.hardcases import CROP, HardCasesError, build, grid, methods, select
from srprior.data.imresize import bicubic_lr
from srprior.data.io import read_image
from srprior.schema import RunContext, Trial, trial_config
from helpers import train_trial
from srprior.trainers.worker import LocalSession
from srprior.options import SweepOptions


def save_checkpoint(path: Path, preset: str, scale: int = 2, lambda_ap: float = 0.0, steps: int = 3,
                    seed: int = SELECTOR_SEEDS[0]) -> Path:
    """A few steps of the real worker (trainers/worker.py without Ray); its last checkpoint saved as state.pt.
    Validation at steps 1 and `steps`: the best weights (what selection uses) are usually the first."""
    trial = Trial(trial_config(preset=preset, scale=scale, lambda_ap=lambda_ap, steps=steps, batch=2, lr_patch=16,
                               val_every=1, val_images=1, eval_crop=32, max_eval_images=1, di=False), seed)
    session = LocalSession()
    train_trial(trial, RunContext(ckpt_every=steps, log_every=steps, figures=False), session)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(session.checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    run = root / "ray" / "sweep-1" / "train"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: threads only wait on each other on a busy machine
    yield {
        "edsr": save_checkpoint(run / "edsr" / "checkpoint_000000" / "state.pt", "edsr-t-micro"),
        "rcan": save_checkpoint(run / "rcan" / "checkpoint_000000" / "state.pt", "rcan-t-micro"),
        "prior": save_checkpoint(run / "prior" / "checkpoint_000000" / "state.pt", "edsr-t-micro", lambda_ap=1e-4),
        "x4": save_checkpoint(run / "x4" / "checkpoint_000000" / "state.pt", "rcan-t-micro", scale=4),
        "table": save_checkpoint(run / "table" / "checkpoint_000000" / "state.pt", "rcan-t-micro", seed=0),
        "root": root,
    }
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- protocol
def test_grid_is_centred_and_non_overlapping():
    assert grid(600, 900) == [(44, 66), (44, 322), (44, 578), (300, 66), (300, 322), (300, 578)]
    assert grid(255, 1000) == []
    assert grid(512, 256) == [(0, 0), (256, 0)]


def test_selection_is_the_rank_sum_of_low_mean_and_high_spread():
    psnr = np.array([          # mean (rank)  std over methods (rank)  rank sum
        [30.0, 30.0, 30.0],    # a: 30   (4)    0.00 (5)                 9
        [26.0, 31.0, 36.0],    # b: 31   (5)    4.08 (1)                 6
        [20.0, 22.0, 24.0],    # c: 22   (1)    1.63 (3)                 4
        [24.0, 24.5, 25.0],    # d: 24.5 (2)    0.41 (4)                 6  (ties b: lower mean first)
        [25.0, 28.0, 31.0],    # e: 28   (3)    2.45 (2)                 5
    ])
    names = ["a", "b", "c", "d", "e"]
    assert select(psnr, names, 5) == [2, 4, 3, 1, 0]
    assert select(psnr, names, 2) == [2, 4]
    same = np.array([[25.0, 27.0], [25.0, 27.0], [30.0, 30.0]])
    assert select(same, ["z", "y", "x"], 2) == [1, 0]  # identical scores: by name


def test_selection_errors():
    with pytest.raises(HardCasesError, match="--count 4"):
        select(np.zeros((3, 2)), ["a", "b", "c"], 4)
    with pytest.raises(HardCasesError, match="methods >= 2"):
        select(np.zeros((3, 1)), ["a", "b", "c"], 1)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_find_checkpoints_newest_per_run(tmp_path):
    for rel in ("ray/s1/train/run-a/checkpoint_000000", "ray/s1/train/run-a/checkpoint_000009",
                "ray/s1/train/run-a/checkpoint_000010", "ray/s2/run-b/checkpoint_000003", "other/checkpoint_000001"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "state.pt").touch()
    assert find_checkpoints(tmp_path) == [tmp_path / "ray/s1/train/run-a/checkpoint_000010/state.pt",
                                          tmp_path / "ray/s2/run-b/checkpoint_000003/state.pt"]
    assert find_checkpoints(tmp_path / "missing") == []


def test_load_checkpoint_model(checkpoints, tmp_path):
    model, trial = load_checkpoint_model(checkpoints["rcan"])
    assert (trial.config.model.preset, trial.config.model.scale) == ("rcan-t-micro", 2) and not model.training
    state = torch.load(checkpoints["rcan"], weights_only=False)
    best = state["best"]["model"]  # model selection's weights, not the last step's (unless they are the best)
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    last, _ = load_checkpoint_model(checkpoints["rcan"], weights="last")
    assert all(torch.equal(v, state["model"][k]) for k, v in last.state_dict().items())
    saved = state["model"]
    no_trial = tmp_path / "old.pt"
    torch.save({"model": saved}, no_trial)
    with pytest.raises(HardCasesError, match=r"old.pt: checkpoint lacks 'trial'"):
        load_checkpoint_model(no_trial)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(HardCasesError, match="garbage.pt: not a loadable srprior checkpoint"):
        load_checkpoint_model(garbage)


def test_methods_are_selectors_on_reserved_seeds_only(checkpoints):
    """Selectors: λ_AP = 0, the scale asked for, a reserved seed; a table-seed baseline never selects."""
    found = methods([checkpoints["root"]], 2)
    assert [m["name"] for m in found] == ["edsr-t-micro", "rcan-t-micro"]  # prior, x4 and table-seed skipped
    assert [len(m["members"]) for m in found] == [1, 1]
    (edsr,) = found[0]["members"]
    assert edsr["sha256"] == hashlib.sha256(checkpoints["edsr"].read_bytes()).hexdigest()
    assert edsr["trial"]["seed"] == SELECTOR_SEEDS[0]
    table_key = load_checkpoint_model(checkpoints["table"])[1].key
    assert table_key not in {m["key"] for f in found for m in f["members"]}
    with pytest.raises(HardCasesError, match=r"at least two architectures, found: edsr-t-micro \(edsr\); "
                                             r"skipped: .*λ_AP=0.0001.*seed 0 is a table seed.*--table selectors"):
        methods([checkpoints["edsr"], checkpoints["prior"], checkpoints["table"]], 2)
    with pytest.raises(HardCasesError, match="--checkpoints nowhere: no such file or folder"):
        methods(["nowhere"], 2)


def test_cli_bad_input_is_one_line(checkpoints, tmp_path, capsys):
    (tmp_path / "Urban100" / "HR").mkdir(parents=True)
    assert main(["data", "hardcases", "--root", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--checkpoints", str(checkpoints["edsr"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "two architectures" in err
    assert main(["data", "hardcases", "--root", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"),
                 "--checkpoints", str(checkpoints["root"])]) == 2
    assert "Urban100 HR folder missing" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- a real build
def _tree_hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_on_three_urban100_images(data_root, checkpoints, tmp_path, capsys):
    root = tmp_path / "root"
    (root / "Urban100" / "HR").mkdir(parents=True)
    for name in ("img_001.png", "img_002.png", "img_003.png"):
        (root / "Urban100" / "HR" / name).symlink_to(data_root / "Urban100" / "HR" / name)
    out = tmp_path / "HardCases-R"
    assert main(["data", "hardcases", "--root", str(root), "--out", str(out), "--checkpoints",
                 str(checkpoints["root"]), "--count", "4", "--max-candidates", "8", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "4 crops of 256x256 from 8 candidates scored by edsr-t-micro ×1, rcan-t-micro ×1" in printed.out
    assert f"control: 4 random tiles of the same pool -> {out / 'control'}" in printed.out

    manifest = json.loads((out / "manifest.json").read_text())
    means = manifest["mean_psnr"]
    weak = [m for m in ("edsr-t-micro", "rcan-t-micro") if means[m] < means["bicubic"]]  # 3 steps: either way
    assert ("score below bicubic on average" in printed.err) == bool(weak)
    assert all(name in printed.err for name in weak)
    assert manifest["protocol"] == "hardcases-r/3" and manifest["scale"] == 2 and len(manifest["images"]) == 4
    selectors = [load_checkpoint_model(checkpoints[k])[1].key for k in ("edsr", "rcan")]
    assert manifest["selector_keys"] == sorted(selectors) and not manifest["with_bicubic"]
    assert [m["name"] for m in manifest["methods"]] == ["bicubic", "edsr-t-micro", "rcan-t-micro"]
    names, psnr = manifest["candidates"]["names"], np.array(manifest["candidates"]["psnr"])
    assert psnr.shape == (8, 3)
    assert manifest["mean_psnr"] == dict(zip(["bicubic", "edsr-t-micro", "rcan-t-micro"],
                                             np.round(psnr.mean(axis=0), 4).tolist()))
    # bicubic is scored and kept in the manifest but stays out of the spread: the networks alone choose
    assert [img["name"] for img in manifest["images"]] == [names[i] for i in select(psnr[:, 1:], names, 4)]
    files = _tree_hashes(out)
    assert len(files) == 17  # 4 HR, 4 LR, the manifest; the control set beside it: 4 HR, 4 LR
    # the control: as many random tiles of the same pool and size, drawn with a fixed seed, unselected
    control = manifest["control"]
    drawn = sorted(np.random.default_rng(control["seed"]).choice(8, 4, replace=False).tolist())
    assert [img["name"] for img in control["images"]] == [names[i] for i in drawn]
    for img, folder in [(i, out) for i in manifest["images"]] + [(i, out / "control") for i in control["images"]]:
        hr_file, lr_file = f"HR/{img['name']}.png", f"LR_bicubic/X2/{img['name']}x2.png"
        rel = folder.relative_to(out).as_posix()
        assert img["files"] == {h: files[(f"{rel}/{h}" if rel != "." else h)] for h in (hr_file, lr_file)}
        hr, lr = read_image(folder / hr_file), read_image(folder / lr_file)
        box = img["box"]
        source = read_image(root / img["source_file"])
        assert hr.shape == (CROP, CROP, 3) and lr.shape == (CROP // 2, CROP // 2, 3)
        assert np.array_equal(hr, source[box["top"]:box["top"] + CROP, box["left"]:box["left"] + CROP])
        assert np.array_equal(lr, bicubic_lr(hr, 2))
        assert img["source_sha256"] == hashlib.sha256((root / img["source_file"]).read_bytes()).hexdigest()
        assert list(img["psnr"]) == ["bicubic", "edsr-t-micro", "rcan-t-micro"]

    bench_root = tmp_path / "bench"
    bench_root.mkdir()
    (bench_root / "HardCases-R").symlink_to(out)
    (bench_root / "Set5").symlink_to(data_root / "Set5")
    assert len(benchmark(bench_root, "HardCases-R", 2)) == 4  # the trainer's loader reads it as is
    # a trial evaluates it under its own name (never as HardCases) and Table 4.7 measures its regions
    from srprior.schema import trial_config
    from srprior.trainers.evaluation import eval_sets, region_set

    cfg = trial_config(data_root=str(bench_root), benchmarks="set5,hardcases_r", max_eval_images=1, eval_crop=32)
    sets = eval_sets(cfg)
    assert list(sets) == ["set5", "hardcases_r", "hardcases_rc"] and region_set(sets, 2)[0] == "hardcases_r"
    first_control = control["images"][0]["name"]
    assert sets["hardcases_rc"][0].name == first_control  # the control tiles, evaluated beside HardCases-R

    again = tmp_path / "again"
    build(root, again, [checkpoints["root"]], count=4, max_candidates=8)
    assert _tree_hashes(again) == files  # deterministic, manifest included
    build(root, out, [checkpoints["root"]], count=4, max_candidates=8)  # replaces its own earlier build
    assert _tree_hashes(out) == files
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(HardCasesError, match="not a HardCases-R build"):
        build(root, foreign, [checkpoints["root"]], count=4, max_candidates=8)
    assert (foreign / "keep.txt").read_text() == "mine" and not list(tmp_path.glob(".foreign-*"))
    shutil.rmtree(again)


def test_no_compared_table_can_run_a_selector_seed():
    """The selectors' reserved seeds are refused for every compared table, so a selector is never compared."""
    from srprior.plan import PlanError, make_plan
    from srprior.search_spaces import TABLES

    plan = make_plan(SweepOptions.of({"table": "selectors", "budget": "smoke"}))
    assert {t.trial.seed for t in plan.trials} == set(SELECTOR_SEEDS)
    assert {t.trial.config.prior.lambda_ap for t in plan.trials} == {0.0}
    for spec in TABLES.values():
        if not spec.selectors:
            assert all(seed < SELECTOR_SEEDS[0] for _, seed, _ in spec.cells())
    with pytest.raises((PlanError, ValueError), match=r"seeds \[1000\] are reserved for the HardCases-R selectors"):
        make_plan(SweepOptions.of({"table": "4.2", "budget": "smoke", "seeds": SELECTOR_SEEDS[0] + 1}))
    with pytest.raises(SystemExit, match="2"):  # the CLI's --seeds range stops below them already
        main(["sweep", "--table", "4.2", "--seeds", str(SELECTOR_SEEDS[0] + 1), "--plan"])


def test_a_tile_cut_from_a_validation_image_is_refused(data_root, tmp_path):
    """A HardCases-R manifest whose tile comes from a DIV2K validation image (an older build, or a hand-made
    one) is refused by the trial's held-out check, in one line, before any step; other sources pass."""
    from srprior.data.datasets import DatasetError
    from srprior.schema import trial_config
    from srprior.trainers.evaluation import held_out, training_data

    div2k = tmp_path / "div2k"
    for split, names in (("train", ("0001", "0002")), ("valid", ("0801",))):
        (div2k / f"DIV2K_{split}_HR").mkdir(parents=True)
        for i, name in enumerate(names):
            shutil.copy(data_root / "Urban100" / "HR" / f"img_00{i + 1 + (split == 'valid') * 4}.png",
                        div2k / f"DIV2K_{split}_HR" / f"{name}.png")
    bench = tmp_path / "bench"
    rebuilt = bench / "HardCases-R"
    (rebuilt / "HR").mkdir(parents=True)
    tile = read_image(div2k / "DIV2K_valid_HR" / "0801.png")[:64, :64]
    from PIL import Image

    Image.fromarray(tile).save(rebuilt / "HR" / "tile.png")
    source = div2k / "DIV2K_valid_HR" / "0801.png"
    manifest = {"protocol": "hardcases-r/2", "images": [{
        "name": "tile", "source_file": "DIV2K_valid_HR/0801.png",
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}]}
    (rebuilt / "manifest.json").write_text(json.dumps(manifest))
    cfg = trial_config(train_root=str(div2k), data_root=str(bench), benchmarks="hardcases_r", val_images=1,
                       eval_crop=16, lr_patch=16, di=False)
    _, val = training_data(cfg)
    with pytest.raises(DatasetError) as err:
        held_out(cfg, val)
    message = str(err.value)
    assert "\n" not in message and "tile tile is cut from" in message and "0801.png" in message
    manifest["images"][0]["source_sha256"] = hashlib.sha256(b"an Urban100 image").hexdigest()
    (rebuilt / "manifest.json").write_text(json.dumps(manifest))
    assert list(held_out(cfg, val)["test"]) == ["hardcases_r"]
