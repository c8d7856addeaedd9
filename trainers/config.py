"""The trial config: everything one training run needs, flat, typed and validated before Ray ever sees it.

A table row's overrides (srprior.search_spaces TRIAL_KEYS) plus a budget's schedule plus data/tracking/execution
fields. The worker receives it as a plain dict (`to_dict`) and rebuilds it (`from_dict`), so a bad value fails
at the sweep's edge with the field's name, not inside a Ray actor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

BENCHMARK_DIRS = {"set5": "Set5", "set14": "Set14", "bsd100": "BSD100", "urban100": "Urban100",
                  "hardcases": "HardCases"}
OPTIONAL_BENCHMARKS = ("hardcases",)  # not public: evaluated when its folder exists under the data root
# Plumbing, not science: kept out of the MLflow params (they differ between machines and retries).
NON_PARAMS = ("tracking_uri", "experiment", "sweep_id", "parent_run_id", "storage_dir", "fault_kill_at_step",
              "trial_started_at")


@dataclass(frozen=True)
class TrialConfig:
    """One trial. Names follow the thesis (lambda_ap, w, n_ssr, scenario, poi_size)."""

    table: str = "adhoc"
    row: str = "default"
    seed: int = 0
    # model and method
    preset: str = "edsr-t"
    scale: int = 2
    lambda_ap: float = 0.0
    w: str | float = "sim"
    n_ssr: int = 1
    scenario: str = "local"
    poi_size: int = 5
    lr: float = 1e-4
    weight_decay: float = 0.0
    # schedule (a budget sets these)
    steps: int = 50_000
    batch: int = 16
    patch: int = 48
    val_every: int = 1000
    ckpt_every: int = 1000
    log_every: int = 50
    # data: None = the embedded default split (srprior.data.embedded)
    train_root: str | None = None  # DIV2K root (DIV2K_train_HR/) or a folder of HR images
    data_root: str | None = None  # benchmark root in the EDSR layout ($SRPRIOR_DATA)
    benchmarks: tuple[str, ...] = tuple(BENCHMARK_DIRS)
    max_eval_images: int = 0  # per evaluation set; 0 = all
    val_images: int = 0  # 0 = all
    eval_crop: int = 0  # > 0: evaluate LR centre crops of this side (smoke budgets); 0 = whole images
    di: bool = True  # LAM diffusion index (50 backward passes per image)
    figures: bool = True
    # execution
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    bf16: bool = False  # bf16 autocast of the model forward (srprior.method.step.TrainStep)
    cuda_graph: bool = False  # capture the whole step as one CUDA graph (GPU, one worker); ignored on CPU
    # tracking / plumbing (NON_PARAMS)
    tracking_uri: str | None = None  # None: no MLflow logging
    experiment: str | None = None
    sweep_id: str = ""
    parent_run_id: str | None = None
    storage_dir: str | None = None  # the Train run's folder (fault markers)
    fault_kill_at_step: int = 0  # tests: os._exit() the worker once at this step (0 = never)
    trial_started_at: float = 0.0  # unix time the Tune trial started (overhead timings)

    def __post_init__(self) -> None:
        from srprior.archs.presets import PRESETS
        from srprior.method.prior import prior_config

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"trial config {self.table}/{self.row}/seed {self.seed}: {name}={getattr(self, name)!r} "
                              f"{why}")

        for name in ("table", "row"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "'" in value:
                raise bad(name, "must be a non-empty string without quotes")
        if self.preset not in PRESETS:
            raise bad("preset", f"is unknown; valid presets: {', '.join(sorted(PRESETS))}")
        if self.scale not in (2, 3, 4):
            raise bad("scale", "must be 2, 3 or 4")
        try:
            prior = prior_config(lambda_ap=self.lambda_ap, w=self.w, n_ssr=self.n_ssr, scenario=self.scenario,
                                 poi_size=self.poi_size)
        except ValueError as exc:
            raise ValueError(f"trial config {self.table}/{self.row}/seed {self.seed}: {exc}") from None
        object.__setattr__(self, "scenario", prior.extractor.scenario)
        object.__setattr__(self, "w", prior.w)
        for name in ("seed", "max_eval_images", "val_images", "eval_crop", "fault_kill_at_step"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("steps", "batch", "patch", "val_every", "ckpt_every", "log_every", "num_workers"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a finite number > 0")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise bad("weight_decay", "must be a number >= 0")
        object.__setattr__(self, "benchmarks", tuple(b.lower() for b in self.benchmarks))
        unknown = sorted(set(self.benchmarks) - set(BENCHMARK_DIRS))
        if unknown:
            raise bad("benchmarks", f"has unknown name(s) {unknown}; valid: {', '.join(BENCHMARK_DIRS)}")
        for name in ("train_root", "data_root"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_absolute():
                raise bad(name, "must be an absolute path (Ray changes the working directory of every trial)")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise bad("cpus_per_worker", "and gpus_per_worker must be > 0 and >= 0")
        if self.cuda_graph and self.num_workers > 1:
            raise bad("cuda_graph", "needs num_workers == 1 (DDP's gradient all-reduce is not captured)")
        if self.use_gpu != (self.gpus_per_worker > 0):
            raise bad("use_gpu", f"must be True exactly when gpus_per_worker > 0 (got {self.gpus_per_worker})")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialConfig:
        """Build from a flat dict; unknown keys are an error that lists the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trial-config key(s) {unknown}; valid keys: {', '.join(sorted(known))}")
        values = dict(values)
        if "benchmarks" in values:
            values["benchmarks"] = tuple(values["benchmarks"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def params(self) -> dict[str, str]:
        """MLflow params: the whole flattened config minus the plumbing."""
        return {k: ",".join(v) if isinstance(v, tuple) else str(v)
                for k, v in asdict(self).items() if k not in NON_PARAMS}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
