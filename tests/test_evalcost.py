"""srprior.evalcost and the plan's evaluation cost: FLOPs of evaluation forwards counted like the training step's
(RNAN's chunked attention included), the image sizes of the chosen sets, `val_crop`, precision by measurement,
and `--plan --json`."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from srprior.options import SweepOptions
from srprior import cost, evalcost
from srprior.archs import build_model
from srprior.archs.rnan import NonLocalBlock
from srprior.plan import make_plan
from srprior.schema import ConfigError, trial_config


def _direct(preset: str, h: int, w: int) -> int:
    with torch.device("meta"):
        model, x = build_model(preset, 2).eval(), torch.empty(1, 3, h, w)
    with torch.no_grad(), evalcost.flop_counter() as counter:
        model(x)
    return int(counter.flops)


def test_image_flops_are_torchs_counter_and_the_chunked_attention_in_two_chunks(monkeypatch):
    """Unchunked: the count equals FlopCounterMode on the same forward. Chunked (max_elems small: 83 query
    chunks): counting in two chunks gives the full path's count, which recomputes theta·phi (3 N×N matmuls
    instead of 2)."""
    with torch.device("meta"):
        model, x = build_model("rnan-t-micro", 2).eval(), torch.empty(1, 3, 24, 24)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    evalcost.image_flops.cache_clear()
    plain = evalcost.image_flops("rnan-t-micro", 2, 24, 24)
    assert plain == counter.get_total_flops() > 0
    monkeypatch.setattr(NonLocalBlock, "max_elems", 2**12)
    evalcost.image_flops.cache_clear()
    chunked = evalcost.image_flops("rnan-t-micro", 2, 24, 24)
    assert chunked == _direct("rnan-t-micro", 24, 24) > plain
    evalcost.image_flops.cache_clear()


def test_rnan_attention_dominates_a_whole_div2k_image():
    """One 678×1020 LR image: ~186 TFLOP for RNAN-T, 98.9 % of it the N×N affinity matmuls (6·N²·C' per block on
    the chunked path), worked out from the blocks' input shapes."""
    shapes = []
    with torch.device("meta"):
        model, x = build_model("rnan-t", 2).eval(), torch.empty(1, 3, 678, 1020)
    for m in model.modules():
        if isinstance(m, NonLocalBlock):
            m.register_forward_pre_hook(lambda m, a: shapes.append((a[0].shape[2] * a[0].shape[3],
                                                                    m.theta.out_channels)))
    with torch.no_grad(), evalcost._two_chunks(model):
        model(x)
    attention = sum(6 * n * n * c for n, c in shapes)
    total = evalcost.image_flops("rnan-t", 2, 678, 1020)
    assert round(total / 1e12) == 186 and 0.985 < attention / total < 1


def test_affine_form_is_exact_for_convolution_nets_and_refused_for_rnan():
    for preset in ("edsr-t", "rcan-t"):
        assert evalcost.shape_flops(preset, 2, 241, 250) == evalcost.image_flops(preset, 2, 241, 250)
    assert evalcost._affine("rnan-t", 2, False) is None


def test_validations_are_the_loops_validation_steps():
    assert evalcost.validations(50_000, 1000, 1000) == 50
    assert evalcost.validations(2000, 250, 500) == 8
    assert evalcost.validations(100, 30) == 4  # 30, 60, 90 and the last step


def test_image_sizes_are_read_from_the_sets_or_documented(data_root):
    from srprior.trainers.evaluation import eval_sets, training_data

    cfg = trial_config(preset="rnan-t", data_root=str(data_root), benchmarks="set5,hardcases", val_images=10)
    val = evalcost.validation_images(cfg)
    assert val.shapes == ((678, 1020),) * 10 and "documented" in val.source and "no --train-root" in val.source
    (set5,) = evalcost.benchmark_images(cfg)  # HardCases is optional and absent: not evaluated, not priced
    assert set5.source == "read" and list(set5.shapes) == [p.lr.shape[:2] for p in eval_sets(cfg)["set5"]]
    assert evalcost.benchmark_images(trial_config(preset="rnan-t"))[0].source.endswith("(assumed: no --data-root)")
    micro = trial_config(preset="edsr-t-micro", val_crop=100)
    v = evalcost._cropped(evalcost.validation_images(micro), 100)
    assert list(v.shapes) == [p.lr.shape[:2] for p in training_data(micro)[1]] and v.source == "read"


def test_val_crop_crops_validation_only_and_is_checked():
    from srprior.trainers.evaluation import eval_sets, training_data

    cfg = trial_config(preset="edsr-t-micro", val_crop=40)
    assert [p.lr.shape[:2] for p in training_data(cfg)[1]] == [(40, 40)] * 3
    assert all(p.lr.shape[0] > 40 for p in eval_sets(cfg)["embedded"])  # final evaluation: whole images
    smoke = trial_config(preset="edsr-t-micro", eval_crop=32)  # the smaller crop wins
    assert [p.lr.shape[:2] for p in training_data(smoke)[1]] == [(32, 32)] * 3
    assert cfg.params()["val_crop"] == "40" and trial_config().data.val_crop == 256
    with pytest.raises(ConfigError, match="val_crop=7: .* use val_crop >= 8 or 0"):
        trial_config(val_crop=7)


def _thesis_rnan(val_crop: int):
    plan = make_plan(SweepOptions.of({"table": "4.2", "budget": "thesis", "rows": "rnan-t/baseline", "set": [f"val_crop={val_crop}"]}))
    return plan.trials[0].trial.config


def test_val_crop_keeps_rnan_validation_under_a_tenth_of_training():
    """Whole DIV2K-valid images: RNAN-T's validation costs several times its training; 256² crops: under 10 %.
    Worked out from the counted FLOPs: 50 validations × 10 images at the eval rate."""
    for crop, low, high in ((0, 3.0, 10.0), (256, 0.01, 0.1)):
        cfg = _thesis_rnan(crop)
        val_s, _ = cost.eval_seconds(cfg, "gpu", 1000)
        train_s = 50_000 * cost.step_seconds(cfg, "gpu")
        assert low < val_s / train_s < high, (crop, val_s / train_s)
    side = 256
    expected = 50 * 10 * evalcost.image_flops("rnan-t", 2, side, side) / (cost.eval_rate(cfg, "gpu").tflops * 1e12)
    assert cost.eval_seconds(cfg, "gpu", 1000)[0] == pytest.approx(expected, rel=1e-12)


def _sweep(capsys, **opts) -> str:
    from srprior.commands import sweep as sweep_command

    assert sweep_command._run(SweepOptions.of({"budget": "thesis", "plan": True, "address": "local", **opts})) == 0
    return capsys.readouterr().out


def test_thesis_plan_prints_evaluation_beside_training_per_preset(capsys, data_root, monkeypatch):
    monkeypatch.setenv("SRPRIOR_DATA", str(data_root))
    out = _sweep(capsys, table="all")
    rows = re.findall(r"    ([\w-]+): (\d+) trials · training ([\d.]+) h · evaluation ([\d.]+) h \(validation "
                      r"([\d.]+) h = ([\d.]+)% of training", out)
    assert {r[0] for r in rows} == {"edsr-t", "rcan-t", "rnan-t", "edsr-t-bn", "edsr-t-15", "edsr-b"}
    assert all(float(r[5]) <= 10 and float(r[3]) > 0 for r in rows)
    rnan = next(r for r in rows if r[0] == "rnan-t")
    assert int(rnan[1]) == 42 and float(rnan[3]) > float(rnan[4])  # final evaluations on whole images dominate
    m = re.search(r"\+ ([\d.]+) H100-hours of evaluation = ([\d.]+) H100-hours all-in", out)
    assert float(m[1]) == pytest.approx(sum(float(r[3]) for r in rows), abs=0.1)
    assert "validation 10 div2k-valid images as LR centre crops of 256² (val_crop), 50 times" in out
    assert "set5: 5 images (read)" in out


def test_no_bf16_entries_thesis_trains_in_fp32_and_the_plan_says_why(capsys):
    plan = make_plan(SweepOptions.of({"table": "4.8", "budget": "thesis"}))
    assert {t.trial.config.model.bf16 for t in plan.trials} == {False}
    out = _sweep(capsys, table="4.8")
    assert "edsr-b prior: fp32: no bf16 prior step of edsr-b measured on gpu (efficiency.json)" in out
    data = cost.load_efficiency()
    fp32 = data["devices"]["gpu"]["fp32"]["edsr-b"]["prior"]
    data["devices"]["gpu"]["bf16"] = {"edsr-b": {"prior": {**fp32, "ms": 200.0, "tflops": fp32["tflops"] * 0.9}}}
    assert cost.measured_precision("edsr-b", True, data=data) == (
        False, "fp32: measured edsr-b prior step bf16 200 ms, fp32 184.3 ms")  # measured, but slower
    assert make_plan(SweepOptions.of({"table": "4.8", "budget": "thesis", "set": ["bf16=true"]})).trials[0].trial.config.model.bf16
    assert "precision: bf16=true (--set), not chosen by measurement" in _sweep(capsys, table="4.8", set=["bf16=true"])


def test_plan_json_has_per_preset_hours_and_the_fixed_designs_all_in_hours(capsys):
    doc = json.loads(_sweep(capsys, table="4.2", json=True))
    plan = make_plan(SweepOptions.of({"table": "4.2", "budget": "thesis"}))
    assert doc["trials"] == doc["designs"]["fixed"]["trials"] == len(plan.trials)
    assert set(doc["presets"]) == {"edsr-t", "rcan-t", "rnan-t"}
    for row in doc["presets"].values():
        assert row["training_h100_hours"] > 0 and row["evaluation_h100_hours"] > 0
    all_in = sum(cost.trial_seconds_all_in(t.trial.config, "gpu", 1000) for t in plan.trials) / 3600
    assert doc["designs"]["fixed"]["h100_hours"] == pytest.approx(all_in, abs=1e-3)
    assert doc["designs"]["fixed"]["h100_hours"] == pytest.approx(
        doc["training_h100_hours"] + doc["evaluation_h100_hours"], abs=2e-3)
