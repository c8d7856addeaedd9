"""The trial schema: one typed, frozen value from table spec to training step, and its content address.

`TrialConfig` is the science of a run (model, prior with its extractor, optimiser, schedule, data and evaluation):
everything that changes a number the run reports. `Trial` is a config plus a seed. Table rows, `--set KEY=VALUE`,
Optuna samples and checkpoints all build it through `trial_config(**flat)` (leaf names are unique, so flat names
are enough: `lambda_ap`, `n_ssr`, `learning_rate`), and every field is parsed and checked by the one rule declared
on it (srprior.schema_fields). Plumbing (tracking URI, sweep id, resources, storage, test hooks) is `RunContext`,
never part of the identity.

Identity (the rule): `Trial.key` = `<config hash>-s<seed>`, the hash being SHA-256 over the canonical JSON of
{SCHEMA_VERSION, every field's value, defaults included}. So a run is reused by any table or search whose row has
the same science, and changing a default, adding a field or bumping SCHEMA_VERSION gives new keys (old runs stay
in MLflow, unreused). Paths count as given: moving the data folder re-keys its runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from srprior.contracts import BENCHMARK_DIRS, BENCHMARKS
from srprior.method.lam import DI_CHANNELS
from srprior.method.prior import PriorConfig
from srprior.method.step import L1_REDUCTIONS
from srprior.schema_fields import (ConfigError, Validated, boolean, build, flatten, integer, is_int, leaf_names,
                                   number, one_of, option, to_bool, to_float, to_int)

# Validation's LR crop side: RNAN-T's non-local attention over a whole 678×1020 DIV2K-valid LR image costs ~186
# TFLOP, so whole-image validation every 1,000 steps cost 4.7× a plain RNAN-T trial's training (the plan,
# srprior.evalcost); 256² central crops bring it to 4.7 % (EDSR-T, RCAN-T 0.6 %), under 10 % with room for the
# evaluation's assumed TFLOP/s, and keep 14 % of each image's pixels for model selection
VAL_CROP = 256
SCHEMA_VERSION = 2  # 2: lr_milestones, lr_gamma renamed learning_rate_milestones, learning_rate_gamma


def _preset(value: Any) -> str | None:
    from srprior.archs import PRESETS

    return None if value in PRESETS else f"is unknown; valid presets: {', '.join(sorted(PRESETS))}"


def _abs_path(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and Path(value).is_absolute()):
        return None
    return "must be an absolute path (Ray changes the working directory of every trial)"


def _benchmarks(value: Any) -> Any:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(v).strip().lower() for v in value) if isinstance(value, (list, tuple)) else value


def _check_benchmarks(value: Any) -> str | None:
    unknown = [b for b in value if b not in BENCHMARK_DIRS] if isinstance(value, tuple) else ["?"]
    return f"has unknown name(s) {unknown}; valid: {', '.join(BENCHMARKS)}" if unknown or not value else None


@dataclass(frozen=True)
class ModelConfig(Validated):
    preset: str = option("edsr-t", _preset, thesis="model (Table 4.1)", help="model preset, e.g. edsr-t, rnan-t")
    scale: int = option(2, one_of((2, 3, 4)), parse=to_int, thesis="scale", help="SR factor")
    bf16: bool = option(False, boolean, parse=to_bool, help="bf16 autocast of the model forward (GPU)")


def _milestones(value: Any) -> Any:
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    return tuple(to_int(v.strip() if isinstance(v, str) else v) for v in value) if isinstance(value, (list, tuple)) \
        else value


def _check_milestones(value: Any) -> str | None:
    ok = isinstance(value, tuple) and all(is_int(v) and v >= 1 for v in value) and list(value) == sorted(set(value))
    return None if ok else "must be increasing step numbers >= 1, comma-separated (e.g. 200000)"


@dataclass(frozen=True)
class OptimConfig(Validated):
    learning_rate: float = option(1e-4, number(0.0, 1.0, low_open=True), parse=to_float,
                                  thesis="learning rate (§4.1)", help="Adam step size, in (0, 1]")
    weight_decay: float = option(0.0, number(0.0, 1.0), parse=to_float, thesis="WD (Table 4.6)",
                                 help="Adam's L2 term, in [0, 1]")
    learning_rate_milestones: tuple[int, ...] = option(
        (), _check_milestones, parse=_milestones, thesis="schedule of [41] (Table 4.8)",
        help="steps at which the learning rate is multiplied by learning_rate_gamma (thesis §4.1: none, the rate "
             "stays fixed)")
    learning_rate_gamma: float = option(0.5, number(0.0, 1.0, low_open=True), parse=to_float,
                                        help="factor at each milestone (EDSR: halved)")
    l1_reduction: str = option("mean", one_of(L1_REDUCTIONS), thesis="L1 of Eq. 3.10",
                               help="mean: |SR-HR| averaged over elements (EDSR/RCAN code); sum: per-image l1 norm")

    def learning_rate_at(self, step: int) -> float:
        """The learning rate of training step `step` (1-based): MultiStepLR's rule."""
        passed = sum(step > m for m in self.learning_rate_milestones)
        return self.learning_rate * self.learning_rate_gamma ** passed


@dataclass(frozen=True)
class ScheduleConfig(Validated):
    steps: int = option(50_000, integer(1, 10**8), parse=to_int, thesis="1000 epochs (§4.1)", help="training steps")
    batch: int = option(16, integer(1, 4096), parse=to_int, thesis="batch 16 (§4.1)", help="patches per step")
    lr_patch: int = option(48, integer(8, 2048), parse=to_int, thesis="48×48 (§4.1)",
                           help="side of the LR training patches")
    val_every: int = option(1000, integer(1, 10**8), parse=to_int, help="validation PSNR every N steps")


@dataclass(frozen=True)
class DataConfig(Validated):
    train_root: str | None = option(None, _abs_path, help="DIV2K root or HR folder (None: the embedded default)")
    data_root: str | None = option(None, _abs_path, help="benchmark root, EDSR layout (None: the embedded test images)")
    benchmarks: tuple[str, ...] = option(BENCHMARKS, _check_benchmarks, parse=_benchmarks,
                                         help="evaluation sets, comma-separated")
    max_eval_images: int = option(0, integer(0, 10**6), parse=to_int, help="first N images per set (0: all)")
    val_images: int = option(0, integer(0, 10**6), parse=to_int, help="validation images (0: all)")
    eval_crop: int = option(0, integer(0, 4096), parse=to_int, help="evaluate LR centre crops of this side (0: whole)")
    val_crop: int = option(VAL_CROP, integer(0, 4096), parse=to_int, thesis="model selection (§4.2)",
                           help="validation (model selection) on LR centre crops of this side (0: whole images); "
                                "final evaluation stays on whole images")
    di: bool = option(True, boolean, parse=to_bool, help="LAM diffusion index (50 backward passes per image)")
    di_channels: str = option(DI_CHANNELS[0], one_of(DI_CHANNELS), thesis="DI (§4.3, LAM [23])",
                              help="abs-of-sum: |sum over RGB| as LAM's code; sum-of-abs: sum of |.| over RGB")
    extra_shave: int = option(0, integer(0, 64), parse=to_int, thesis="6 + scale (§4.3)",
                              help="border pixels shaved beyond the scale before PSNR/SSIM (§4.3 literal: 6)")


@dataclass(frozen=True)
class TrialConfig(Validated):
    """The science of one run (see the module docstring); seedless."""

    model: ModelConfig = option(default_factory=ModelConfig, check=None)
    prior: PriorConfig = option(default_factory=PriorConfig, check=None)
    optim: OptimConfig = option(default_factory=OptimConfig, check=None)
    schedule: ScheduleConfig = option(default_factory=ScheduleConfig, check=None)
    data: DataConfig = option(default_factory=DataConfig, check=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        problem = self.extractor_problem() or self.eval_crop_problem() or self.val_crop_problem()
        if problem:
            raise ConfigError(problem)

    def extractor_problem(self) -> str | None:
        """Fields valid alone can still be impossible on the crop: n_ssr=10^9 passes its own check and crashes
        (or silently never trains L_AP) inside every trial; found here, it is one line before anything starts."""
        from srprior.method.ssm import crop_problem

        return crop_problem(self.prior.extractor, self.schedule.lr_patch)

    def eval_crop_problem(self) -> str | None:
        """An evaluation crop must leave SSIM's 11x11 window after the shave, and hold LAM's 16x16 HR window."""
        data, scale = self.data, self.model.scale
        if not data.eval_crop:
            return None
        shave = scale + data.extra_shave
        need = max(-(-(11 + 2 * shave) // scale), -(-16 // scale) if data.di else 1)
        if data.eval_crop >= need:
            return None
        return (f"DataConfig.eval_crop={data.eval_crop}: at x{scale} with {shave} px shaved per border it leaves no "
                f"room for SSIM's 11x11 window{' or the 16x16 LAM window' if data.di else ''}; use eval_crop >= "
                f"{need} or 0 (whole images)")

    def val_crop_problem(self) -> str | None:
        """A validation crop must leave SSIM's 11x11 window after the shave (validation scores PSNR and SSIM)."""
        data, scale = self.data, self.model.scale
        need = -(-(11 + 2 * (scale + data.extra_shave)) // scale)
        if not data.val_crop or data.val_crop >= need:
            return None
        return (f"DataConfig.val_crop={data.val_crop}: at x{scale} it leaves no room for SSIM's 11x11 window after "
                f"the shave; use val_crop >= {need} or 0 (whole images)")

    def flat(self) -> dict[str, Any]:
        return flatten(self)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-able): checkpoints and Tune configs carry it."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def hash(self) -> str:
        blob = json.dumps({"schema": SCHEMA_VERSION, "config": asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def params(self) -> dict[str, str]:
        """MLflow params: every leaf, by its unique short name."""
        return {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in self.flat().items()}


SCIENCE_KEYS = tuple(leaf_names(TrialConfig))
"""Every name `--set`, table rows and Optuna may set (unique leaf names of TrialConfig)."""
READINGS = ("select_n", "local_geometry", "similarity", "l1_reduction", "di_channels", "extra_shave",
            "selection_area", "invalid_samples", "val_crop")
"""Where the thesis leaves a choice open or the code had to pick (issue "Fidelity"; README: The method)."""


def trial_config(where: str = "", **flat: Any) -> TrialConfig:
    """TrialConfig from flat leaf names; a bad value raises ConfigError naming `where` and the field."""
    try:
        return build(TrialConfig, flat, where)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(f"{where}: {msg}" if where and not msg.startswith(where) else msg) from None


def from_dict(nested: dict[str, Any]) -> TrialConfig:
    """Inverse of TrialConfig.to_dict (a checkpoint's or a Tune config's copy), validated again."""
    flat: dict[str, Any] = {}

    def walk(d: dict[str, Any]) -> None:
        for k, v in d.items():
            walk(v) if isinstance(v, dict) else flat.__setitem__(k, v)

    walk(nested)
    return trial_config("stored trial config", **flat)


@dataclass(frozen=True)
class Trial:
    """A science config and a seed: what a run trains, and its content address `key`."""

    config: TrialConfig
    seed: int

    def __post_init__(self) -> None:
        if not isinstance(self.config, TrialConfig):
            raise ConfigError(f"Trial.config must be a TrialConfig, got {type(self.config).__name__}")
        if not is_int(self.seed) or not 0 <= self.seed < 2**31:
            raise ConfigError(f"Trial.seed={self.seed!r}: must be an integer in [0, 2^31)")

    @property
    def key(self) -> str:
        return f"{self.config.hash}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "seed": self.seed}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Trial:
        return cls(from_dict(value["config"]), value["seed"])


@dataclass(frozen=True)
class RunContext:
    """Plumbing of one run: where it logs and writes, on what resources, and how often (not science)."""

    tracking_uri: str | None = None  # None: no MLflow logging
    experiment: str | None = None
    sweep_id: str = ""
    parent_run_id: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # (table, row) names shown on the run: browsing, not identity
    retrain: bool = False  # a new run even when one with the same key exists
    resume_run_id: str | None = None  # the unfinished run of this key the planner found (continued, not duplicated)
    storage_dir: str | None = None  # the Train run's folder (fault markers)
    log_every: int = 50
    ckpt_every: int = 1000
    figures: bool = True
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    cuda_graph: bool = False  # capture the step as one CUDA graph (GPU, one worker); ignored on CPU
    fault_kill_at_step: int = 0  # tests: os._exit() the worker once at this step (0 = never)
    trial_started_at: float = 0.0  # unix time the Tune trial started (overhead timings)
    # Divergence without NaN (srprior.trainers.health.Behaviour; budgets set them): a run is FAILED "diverged"
    # when its training loss exceeds diverge_loss_ratio × its step-1 value (the untrained model's: a too large
    # learning rate blows it up by orders of magnitude, lr=1 on the smoke table 0.3 → 3e11, while training lowers
    # it; 0 = off), or when after diverge_warmup × steps its validation PSNR is more than diverge_psnr_margin dB
    # below bicubic's on the same images (None = off: a model that cannot beat bicubic yet, e.g. smoke's).
    diverge_loss_ratio: float = 100.0
    diverge_psnr_margin: float | None = None
    diverge_warmup: float = 0.2

    def __post_init__(self) -> None:
        for name in ("log_every", "ckpt_every", "num_workers"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"RunContext.{name}={getattr(self, name)!r}: must be an integer >= 1")
        if not (self.diverge_loss_ratio == 0 or self.diverge_loss_ratio > 1) or not 0 <= self.diverge_warmup <= 1 \
                or (self.diverge_psnr_margin is not None and not self.diverge_psnr_margin >= 0):
            raise ConfigError(f"RunContext: diverge_loss_ratio={self.diverge_loss_ratio} must be 0 (off) or > 1, "
                              f"diverge_warmup={self.diverge_warmup} in [0, 1], diverge_psnr_margin="
                              f"{self.diverge_psnr_margin} None (off) or >= 0")
        if self.cuda_graph and self.num_workers > 1:
            raise ConfigError("cuda_graph needs one worker per trial (DDP's gradient all-reduce is not captured)")
        if self.use_gpu != (self.gpus_per_worker > 0):
            raise ConfigError(f"RunContext.use_gpu must be True exactly when gpus_per_worker > 0 "
                              f"(got {self.gpus_per_worker})")

    def replace(self, **changes: Any) -> RunContext:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return RunContext(**{**values, **changes})


def readings_in_force(configs: list[TrialConfig]) -> dict[str, str]:
    """The value of every READINGS field across `configs` ("varies by row" when they differ): report headers."""
    out = {}
    for name in READINGS:
        values = {str(c.flat()[name]) for c in configs}
        out[name] = values.pop() if len(values) == 1 else "varies by row"
    return out


def field_lines() -> list[str]:
    """One line per science field for `srprior sweep --help` (`--set KEY=VALUE`), from the schema's metadata."""
    from srprior.schema_fields import describe

    return [f"  {name}={default!r}: {help or '-'}" + (f" [thesis: {thesis}]" if thesis else "")
            for name, default, thesis, help in describe(TrialConfig)]
