"""Named compute budgets: how long and on what a sweep's trials train, as data the sweep applies to each trial.

"Epoch" (thesis §4.1: "1000 epochs", batch 16, 48×48 LR patches, 800 DIV2K training images) is one pass over
the 800 training images with one random patch each: 800 / 16 = STEPS_PER_EPOCH = 50 steps, so thesis = 50,000
steps. Why not EDSR-PyTorch's epoch (1000 batches via its data repeat, which would make 1000 epochs 1M steps):
the thesis trains with its own loader (torchvision augmentation, PNGs read directly) rather than EDSR's, it
states no repeat factor, and it cuts training "given computational constraints" although EDSR-B's full schedule
is 300K steps; 1M steps for a *tiny* model would be 3.3× that full schedule, 50K steps is consistent with the
stated motivation. A different reading is one flag away: `--steps` overrides the budget.

`smoke` tests the platform in minutes; its micro models learn a residual over bicubic (archs.presets), so its
table's "Δ vs bicub" column shows whether training moves them, never the thesis's effects. `cpu-hour` is the
smallest budget sized for one: Table 4.2's λ_AP effect on EDSR-T as edsr-t-micro (the micro model whose prior step
is cheapest on a CPU, benchmarks/step_cost.py), three rows (λ_AP = 0, 1e-4, 5e-3: the rows of the thesis's §4.4.1
claims on EDSR-T, so the report tests them), 10 seeds per row so that a comparison detects 1.33 seed standard
deviations at 80% power (stats.mde; about 0.07 dB at the 0.05 dB seed spread measured on the test crops), and 2,000
steps to fill the hour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STEPS_PER_EPOCH = 50  # 800 DIV2K training images / batch 16
# GPU budgets choose each trial's precision by measurement (Budget.precision "measured"): bf16 autocast only where
# efficiency.json measured the preset's step faster in bf16 on a GPU (srprior.cost.measured_precision;
# benchmarks/bf16_fidelity.py finds bf16's change to L_AP, L1 and PSNR below seed-to-seed noise, README), else fp32
# (the only H100 measurement before the GPU suite found bf16 autocast made the double backward slower). The
# field bf16 is science, so run keys say which; `--set bf16=true|false` overrides the measurement.
GPU = {"precision": "measured"}
# Thesis-sized models on DIV2K: a trial still 3 dB under bicubic after a fifth of its steps is not learning SR
# (srprior.trainers.health.Behaviour; RunContext's comment says why each rule exists)
DIVERGE = dict(diverge_psnr_margin=3.0, diverge_warmup=0.2)
CPU_HOUR_SEEDS = 10  # per row: a Welch comparison's MDE (80% power, α = 0.05) is then 1.33 seed standard deviations


@dataclass(frozen=True)
class Budget:
    """How long and on what a sweep's trials train: science fields (`science`, part of every trial's identity),
    run-context fields (`context`: logging, checkpoints, figures), seeds per row and the micro-model swap."""

    name: str
    summary: str
    science: dict[str, Any]  # TrialConfig leaf names: steps, batch, lr_patch, val_every, eval sizes
    context: dict[str, Any] = field(default_factory=dict)  # RunContext fields: log_every, ckpt_every, figures
    seeds: int | None = None  # first N seeds of each row (None: all)
    micro: bool = False  # replace each preset by its architecture's -micro preset (CPU smoke runs)
    rows: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> the rows it is sized for ({}: all)
    caption: str = ""  # in every report view: what its numbers can and cannot show ({steps}, {seeds}: what ran)
    precision: str = "fp32"  # "measured": bf16 per trial where efficiency.json measured it faster (GPU budgets)

    def __post_init__(self) -> None:
        from srprior.schema import RunContext, trial_config

        trial_config(f"budget {self.name!r}", **self.science)  # one rule set: the schema's
        RunContext(**self.context)
        if self.precision not in ("fp32", "measured"):
            raise ValueError(f"budget {self.name!r}: precision={self.precision!r} must be fp32 or measured")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"budget {self.name!r}: seeds={self.seeds} must be >= 1 or None")

    def table_rows(self, table: str) -> tuple[str, ...] | None:
        """The rows of `table` this budget runs (None: all); a budget sized for some tables refuses the others."""
        if not self.rows:
            return None
        if table not in self.rows:
            raise ValueError(f"budget {self.name!r} is sized for table(s) {', '.join(self.rows)} only; for table "
                             f"{table} use --budget smoke (CPU, minutes) or short (GPU)")
        return self.rows[table]

    def preset(self, preset: str) -> str:
        """The model this budget trains for a row's `preset` (micro budgets swap it)."""
        from srprior.archs import micro_preset

        return micro_preset(preset) if self.micro else preset


BUDGETS: dict[str, Budget] = {b.name: b for b in (
    Budget("smoke", "CPU, minutes: micro models (a residual over bicubic), 100 steps of 8 16×16 patches at Adam "
           "1e-3, 2 seeds per row (real ± and tests), one 32×32 LR crop per eval set, figures (about 1 s per trial)",
           science=dict(steps=100, batch=8, lr_patch=16, learning_rate=1e-3, val_every=10, max_eval_images=1,
                        val_images=1, eval_crop=32),
           context=dict(ckpt_every=10, log_every=5, figures=True), seeds=2, micro=True,
           caption="smoke budget: {steps} steps, {seeds} seeds per row, micro models learning a residual over "
                   "bicubic; it tests the platform, too short to reproduce the thesis's effects (`--budget "
                   "cpu-hour` on 2 CPU cores, `short` on a GPU for that)."),
    Budget("cpu-hour", "2 CPU cores, about an hour: Table 4.2's EDSR-T rows λ_AP = 0, 1e-4, 5e-3 as micro models, "
           "10 seeds each (MDE 1.33 seed-std per comparison at 80% power), 2,000 steps of 16 32×32 patches at Adam "
           "1e-3, all three test images as 64×64 LR crops",
           science=dict(steps=2000, batch=16, lr_patch=32, learning_rate=1e-3, val_every=250, val_images=1,
                        eval_crop=64),
           context=dict(ckpt_every=500, log_every=50, figures=True), seeds=CPU_HOUR_SEEDS, micro=True,
           rows={"4.2": ("edsr-t/baseline", "edsr-t/lambda-1e-4", "edsr-t/lambda-5e-3")},
           caption="cpu-hour budget: {steps} steps of micro models (a residual over bicubic), {seeds} seeds per "
                   "row: λ_AP's effect on PSNR and DI with its confidence interval at micro scale; the thesis's "
                   "numbers are for EDSR-T after 50,000 steps (`--budget short` on a GPU)."),
    Budget("short", "one GPU, ~10 min per trial: thesis models and crops, 5,000 steps (100 epochs), bf16 where "
           "measured faster",
           science=dict(steps=100 * STEPS_PER_EPOCH, batch=16, lr_patch=48, val_every=500, val_images=10),
           context=dict(ckpt_every=500, log_every=50, **DIVERGE), **GPU),
    Budget("thesis", "§4.1: batch 16, 48×48, Adam 1e-4, 1000 epochs = 50,000 steps, all seeds and images, bf16 "
           "where measured faster",
           science=dict(steps=1000 * STEPS_PER_EPOCH, batch=16, lr_patch=48, val_every=20 * STEPS_PER_EPOCH,
                        val_images=10),
           context=dict(ckpt_every=20 * STEPS_PER_EPOCH, log_every=STEPS_PER_EPOCH, **DIVERGE), **GPU),
)}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; available: {', '.join(BUDGETS)}")
    return BUDGETS[name]
