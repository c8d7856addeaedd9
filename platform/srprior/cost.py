"""What a sweep costs: FLOPs counted per training step, divided by an efficiency measured per device and precision.

Why FLOPs: a step's time is its arithmetic over the rate at which a device does it, and the two vary apart —
EDSR-B has 30x EDSR-T's FLOPs but keeps an H100 6x busier, so scaling EDSR-T's milliseconds by size (the old
rule) put Table 4.8 at 4-6x its measured time. The arithmetic is counted, not guessed: one plain or prior step
(srprior.method.step.TrainStep, double backward and Adam included) runs on the meta device under torch's FLOP
formulas (torch.utils.flop_counter), at the trial's own batch and crop, so RNAN's non-local attention (quadratic
in pixels) is counted exactly. FLOPS ships the thesis shapes (tests check it against the counter); other shapes
are counted once per process.

Evaluation (validation, final evaluations, DI) is counted the same way at the evaluated images' sizes
(srprior.evalcost) and priced at the preset's fp32 plain-step efficiency; a trial's all-in cost is
trial_seconds_all_in. GPU budgets train a step in bf16 only where it was measured faster (measured_precision).

The efficiency (TFLOP/s) is data: efficiency.json beside this module (package data, so an editable install and
a wheel read the same file; benchmarks/gpu_suite_table.py rewrites it from a GPU run). Each entry says how it
was obtained — measured, or extrapolated — and a lookup that has to borrow another preset's or precision's
entry says so ("assumed"), so the plan never passes a guess off as an estimate.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EFFICIENCY_FILE = Path(__file__).with_name("efficiency.json")
# Ray Train start-up per run: GPU from benchmarks/sweep_overhead.py; CPU the main job's to-first-step (19.7-21.0 s
# per run, 2026-12-07, quiet 2-core machine)
STARTUP_SECONDS = {"cpu": 20.0, "gpu": 50.0}
MODES = ("plain", "prior")

# FLOPs of one training step at the thesis shape (x2, batch 16, 48x48 LR), counted by step_flops (test_cost.py).
THESIS_SHAPE = (2, 16, 48)
FLOPS = {
    "edsr-t": (303_477_497_856, 607_235_678_208),
    "edsr-t-bn": (303_477_497_856, 607_235_678_208),
    "edsr-t-15": (287_170_043_904, 574_620_770_304),
    "edsr-b": (9_008_855_064_576, 18_018_373_017_600),
    "rcan-t": (1_102_545_690_624, 2_205_372_063_744),
    "rnan-t": (394_527_449_088, 855_622_361_088),
}


def count_step_flops(preset: str, scale: int, batch: int, patch: int, prior: bool) -> int:
    """FLOPs of one TrainStep on the meta device (no memory, no arithmetic: shapes only)."""
    import torch

    from srprior.archs import build_model
    from srprior.evalcost import flop_counter
    from srprior.method.prior import PriorConfig
    from srprior.method.step import TrainStep, make_optimizer

    with torch.device("meta"):
        model = build_model(preset, scale)
        lr, hr = torch.empty(batch, 3, patch, patch), torch.empty(batch, 3, patch * scale, patch * scale)
    step = TrainStep(model, make_optimizer(model), PriorConfig(lambda_ap=1e-4 if prior else 0.0), scale)
    with flop_counter() as counter:
        step(lr, hr)
    return int(counter.flops)


@functools.lru_cache(maxsize=None)
def step_flops(preset: str, scale: int, batch: int, patch: int, prior: bool) -> int:
    """FLOPs of one plain or prior training step: the shipped count at the thesis shape, else counted."""
    if (scale, batch, patch) == THESIS_SHAPE and preset in FLOPS:
        return FLOPS[preset][prior]
    return count_step_flops(preset, scale, batch, patch, prior)


def shape_of(config: Any) -> tuple[int, int, int]:
    return config.model.scale, config.schedule.batch, config.schedule.lr_patch


def config_flops(config: Any) -> int:
    return step_flops(config.model.preset, *shape_of(config), config.prior.lambda_ap > 0)


# ---------------------------------------------------------------------------------------------- efficiency
@dataclass(frozen=True)
class Rate:
    """TFLOP/s assumed for one (device, precision, preset, mode), and where the number comes from."""

    tflops: float
    source: str  # "measured" | "extrapolated" | "assumed"
    basis: str  # who measured it, how it was extrapolated, or whose entry is borrowed

    def label(self) -> str:
        return f"{self.tflops:.3g} TFLOP/s {self.source} ({self.basis})"


def load_efficiency(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or EFFICIENCY_FILE).read_text())


@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    return load_efficiency()


def precision(config: Any, cuda_graph: bool = False, device: str = "gpu") -> str:
    """The efficiency table's precision key of a trial: fp32 (torch defaults) or bf16, '+graph' when captured."""
    return ("bf16" if config.model.bf16 else "fp32") + ("+graph" if cuda_graph and device == "gpu" else "")


def rate(device: str, prec: str, preset: str, mode: str, data: dict[str, Any] | None = None,
         shape: tuple[int, int, int] | None = None) -> Rate:
    """Efficiency of `preset`'s `mode` step: its own entry; else (assumed) its own at this precision without
    '+graph', then at fp32 (size moves efficiency more than precision: EDSR-B runs 4-6x EDSR-T's TFLOP/s); else
    the nearest-sized preset (in FLOPs) of the same architecture, in the same order of precisions. An entry may
    be a list measured at several shapes: the one nearest `shape` (scale, batch, LR patch) in pixels counts. An
    architecture with no entry at all assumes the architecture its file names (srprior.archs.registry
    `efficiency_like`), in the same order."""
    from srprior.archs import PRESETS, arch_of

    table, spec = (data or _shipped())["devices"][device], arch_of(preset)
    precs = list(dict.fromkeys((prec, prec.split("+")[0], "fp32")))
    for arch in dict.fromkeys((spec.name, spec.efficiency_like)):
        for own in (True, False):
            for p in precs:
                entries = {name: modes[mode] for name, modes in table.get(p, {}).items() if mode in modes}
                kin = [n for n in entries if (n == preset) == own and PRESETS.get(n, {}).get("arch") == arch]
                if not kin:
                    continue
                best = min(kin, key=lambda n: abs(math.log(_size(n) / _size(preset))))
                e = _nearest_shape(entries[best], shape)
                if best == preset and p == prec:
                    other = shape and "batch" in e and (e["scale"], e["batch"], e["patch"]) != tuple(shape)
                    return Rate(e["tflops"], e["source"],
                                e["by"] + (f"; at b{e['batch']} {e['patch']}²" if other else ""))
                like = "" if arch == spec.name else f"; {spec.name} has none: assumed from {arch}'s, as its file says"
                return Rate(e["tflops"], "assumed", f"{best} {p} {mode}'s, {e['source']}{like}")
    raise ValueError(f"{EFFICIENCY_FILE.name}: no {device} efficiency for any {spec.name} or "
                     f"{spec.efficiency_like} preset ({mode} steps); measure one (benchmarks/step_cost.py)")


def measured_at_shapes(value: dict | list) -> list[dict]:
    """A mode's entries: one dict, or a list of dicts measured at several shapes."""
    return value if isinstance(value, list) else [value]


def _nearest_shape(value: dict | list, shape: tuple[int, int, int] | None) -> dict:
    """The entry measured nearest `shape` in batch × LR pixels (small shapes keep a CPU far less busy:
    edsr-t-micro's plain step does 8.9 GFLOP/s at batch 8 of 16², 14.1 at batch 16 of 32²)."""
    found = measured_at_shapes(value)
    if shape is None:
        return found[0]
    pixels = shape[1] * shape[2] ** 2
    return min(found, key=lambda x: abs(math.log(x.get("batch", 1) * x.get("patch", 1) ** 2 / pixels)))


def _size(preset: str) -> int:
    """How big a preset is, for borrowing the nearest one's efficiency: its plain step's FLOPs."""
    return step_flops(preset, *THESIS_SHAPE, False)


def entry(preset: str, mode: str, ms: float, by: str, shape: tuple[int, int, int] = THESIS_SHAPE) -> dict:
    """An efficiency entry from a measured step time at `shape` (scale, batch, LR patch): TFLOP/s = FLOPs / time."""
    flops = step_flops(preset, *shape, mode == "prior")
    return {"tflops": float(f"{flops / (ms * 1e-3) / 1e12:.5g}"), "source": "measured", "by": by, "ms": ms,
            "scale": shape[0], "batch": shape[1], "patch": shape[2]}


# ---------------------------------------------------------------------------------------------- the plan's cost
def step_seconds(config: Any, device: str, cuda_graph: bool = False) -> float:
    """Seconds per training step of `config` on `device` ('cpu' | 'gpu'): counted FLOPs / efficiency."""
    mode = MODES[config.prior.lambda_ap > 0]
    r = rate(device, precision(config, cuda_graph, device), config.model.preset, mode, shape=shape_of(config))
    return config_flops(config) / (r.tflops * 1e12)


@dataclass(frozen=True)
class Cost:
    device: str
    compute_s: float  # device-seconds of training steps
    startup_s: float
    wall_s: float  # the Ray Train runs in plan order on `concurrent` slots, each taking the first free one
    flops: float  # all training steps' FLOPs
    eval_s: float = 0.0  # device-seconds of validation, final evaluations and DI (eval_seconds)


def estimate(trials: Sequence[Any], device: str, concurrent: int, groups: Sequence[Sequence[Any]] | None = None,
             cuda_graph: bool = False, ckpt_every: int | None = None) -> Cost:
    """Training steps × step time, plus one start-up per Ray Train run (`groups`: the fused groups of `trials`;
    default one run per trial), plus each trial's evaluation (eval_seconds). Fused members are costed as
    separate steps: fusion's speed-up is measured, not assumed. The wall time schedules the runs as Tune starts
    them, so a long last group is not averaged away."""
    runs = [[t.trial.config for t in g] for g in (groups or [[t] for t in trials])]
    seconds = [[c.schedule.steps * step_seconds(c, device, cuda_graph) for c in run] for run in runs]
    evals = [[sum(eval_seconds(c, device, ckpt_every)) for c in run] for run in runs]
    startup = STARTUP_SECONDS[device]
    slots = [0.0] * max(1, concurrent)
    for run, ev in zip(seconds, evals):
        first = min(range(len(slots)), key=slots.__getitem__)
        slots[first] += startup + math.fsum(run) + math.fsum(ev)
    flops = math.fsum(c.schedule.steps * config_flops(c) for run in runs for c in run)
    return Cost(device, math.fsum(map(math.fsum, seconds)), startup * len(runs), max(slots), flops,
                math.fsum(map(math.fsum, evals)))


# ---------------------------------------------------------------------------------------------- evaluation, precision
def eval_rate(config: Any, device: str) -> Rate:
    """Evaluation runs forwards in fp32 (srprior.evaluate: no autocast): priced at the preset's fp32 plain step's
    TFLOP/s (assumed: no forward-only entry is measured; a batch-1 whole image keeps a GPU no busier)."""
    return rate(device, "fp32", config.model.preset, "plain", shape=shape_of(config))


def eval_seconds(config: Any, device: str, ckpt_every: int | None = None) -> tuple[float, float]:
    """(validation, final evaluation + DI) device-seconds of one trial (srprior.evalcost's FLOPs / eval_rate)."""
    from srprior.evalcost import trial_eval_flops

    flops, tflops = trial_eval_flops(config, ckpt_every), eval_rate(config, device).tflops * 1e12
    return flops.validation / tflops, (flops.final + flops.di) / tflops


def trial_seconds_all_in(config: Any, device: str = "gpu", ckpt_every: int | None = None) -> float:
    """Device-seconds of one planned trial, all in: its training steps, validations, final evaluations and DI
    (start-up apart: it belongs to a Ray Train run, which a fused group shares). Designs price trials with it."""
    return config.schedule.steps * step_seconds(config, device) + sum(eval_seconds(config, device, ckpt_every))


def measured_precision(preset: str, prior: bool, device: str = "gpu", data: dict[str, Any] | None = None,
                       shape: tuple[int, int, int] = THESIS_SHAPE) -> tuple[bool, str]:
    """(bf16?, why) for a budget whose precision is chosen by measurement: bf16 only where efficiency.json has
    the preset's own measured fp32 and bf16 steps of this mode and bf16's is faster (benchmarks/bf16_fidelity.py
    finds bf16 harmless to L_AP, L1 and PSNR); fp32 otherwise, saying why."""
    mode = MODES[prior]
    table = (data or _shipped())["devices"].get(device, {})
    found = {p: _nearest_shape(table[p][preset][mode], shape) for p in ("fp32", "bf16")
             if mode in table.get(p, {}).get(preset, {})}
    found = {p: e for p, e in found.items() if e.get("source") == "measured" and "ms" in e}
    if "bf16" not in found:
        return False, f"fp32: no bf16 {mode} step of {preset} measured on {device} (efficiency.json)"
    if "fp32" not in found:
        return False, f"fp32: bf16 {mode} step of {preset} measured, but no fp32 one to compare it with"
    bf, fp = found["bf16"]["ms"], found["fp32"]["ms"]
    faster = found["bf16"]["tflops"] > found["fp32"]["tflops"]
    return faster, f"{'bf16' if faster else 'fp32'}: measured {preset} {mode} step bf16 {bf:g} ms, fp32 {fp:g} ms"


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def model_lines(trials: Sequence[Any], devices: Sequence[str], cuda_graph: bool = False) -> list[str]:
    """One line per kind of step in the plan: FLOPs per step, and per device the TFLOP/s assumed, its source and
    the resulting time per step."""
    kinds: dict[tuple, Any] = {}
    for t in trials:
        c = t.trial.config
        kinds.setdefault((c.model.preset, c.model.scale, c.schedule.batch, c.schedule.lr_patch, c.model.bf16,
                          c.prior.lambda_ap > 0), c)
    out = [f"  cost model: FLOPs per step (counted) / TFLOP/s ({EFFICIENCY_FILE.name}: measured, extrapolated or "
           "assumed) = time per step:"]
    for (preset, scale, batch, patch, _, prior), c in sorted(kinds.items(), key=lambda kv: str(kv[0])):
        flops = config_flops(c)
        out.append(f"    {preset} x{scale} b{batch} {patch}² {precision(c)} {MODES[prior]}: "
                   f"{_gflop(flops)} GFLOP/step")
        for dev in devices:
            r = rate(dev, precision(c, cuda_graph, dev), preset, MODES[prior], shape=shape_of(c))
            out.append(f"      {dev}: {r.label()} -> {_ms(flops / (r.tflops * 1e12))}")
    return out


def _gflop(flops: float) -> str:
    """Thousands separated for thesis models, three significant digits for micro ones (not '0 GFLOP')."""
    return f"{flops / 1e9:,.0f}" if flops >= 1e11 else f"{flops / 1e9:.3g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def plan_lines(to_train: Sequence[Any], device: str, concurrent: int, groups: Sequence[Sequence[Any]] | None,
               cuda_graph: bool = False, detail: bool = True, ckpt_every: int | None = None) -> list[str]:
    """The plan's cost block: the cost model per kind of step, then the estimate here and on one H100 with its
    floor at the H100's dense bf16 peak. Without `detail` (a sweep that runs, not --plan): the estimate here only,
    so the main job's console stays short."""
    devices = tuple(dict.fromkeys((device, "gpu"))) if detail else (device,)
    out = model_lines(to_train, devices, cuda_graph) if detail else []
    data = _shipped()
    for dev in devices:
        here = dev == device
        cost = estimate(to_train, dev, concurrent if here else 1, groups if here else None, cuda_graph, ckpt_every)
        where = "here" if here else "one H100, one trial at a time"
        out.append(f"  estimated cost ({dev}, {where}): {hours(cost.compute_s)} of training steps + "
                   f"{hours(cost.eval_s)} of evaluation (validation, final evaluations, DI) + "
                   f"{hours(cost.startup_s)} start-up; wall ≈ {hours(cost.wall_s)} (checkpoints not counted)")
        if dev == "gpu":
            peak, suite = data["peak"]["gpu"], data.get("gpu_suite")
            floor = cost.flops / (peak["tflops"] * 1e12) / 3600
            out.append(f"    = {cost.compute_s / 3600:.1f} H100-hours for {cost.flops / 1e18:.3g} EFLOP; floor at "
                       f"the {peak['what']} ({peak['tflops']:g} TFLOP/s): {floor:.2f} H100-hours; "
                       + (f"efficiency measured by benchmarks/gpu_suite.sh ({suite})" if suite else
                          "GPU efficiency is not yet from benchmarks/gpu_suite.sh: extrapolated"))
            out.append(f"    + {cost.eval_s / 3600:.1f} H100-hours of evaluation = "
                       f"{(cost.compute_s + cost.eval_s) / 3600:.1f} H100-hours all-in (fixed design)")
    return out


def preset_costs(trials: Sequence[Any], device: str = "gpu", ckpt_every: int | None = None) -> dict[str, dict]:
    """Per preset: trials, and device-seconds of training, validation and final evaluation + DI (no start-up)."""
    out: dict[str, dict] = {}
    for t in trials:
        c = t.trial.config
        val, final = eval_seconds(c, device, ckpt_every)
        row = out.setdefault(c.model.preset, {"trials": 0, "training_s": 0.0, "validation_s": 0.0, "final_s": 0.0})
        row["trials"] += 1
        row["training_s"] += c.schedule.steps * step_seconds(c, device)
        row["validation_s"] += val
        row["final_s"] += final
    return out
