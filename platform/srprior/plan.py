"""Planning a sweep: pure, typed, no Ray. Options in; trials (deduplicated by content), labels and resources out
(their cost: srprior.cost). `srprior sweep ... --plan` prints it without starting anything.

A plan is built from tables (or a search), a budget and `--set` overrides: each (table row, seed) becomes a
srprior.schema.Trial; trials with the same key (same science, same seed) are planned once, the first table row
naming it owns it and the others are listed as sharing it. Which of them are already finished in MLflow is the
launcher's question (srprior.sweep looks their keys up before training).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srprior.errors import UserError
from srprior.options import SweepOptions
from srprior.schema import SCIENCE_KEYS, RunContext, Trial, TrialConfig, trial_config

ALL_TABLES = ("4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8")  # `--table all`: the thesis's tables


class PlanError(UserError, ValueError):
    """Invalid sweep options; raised before anything starts."""


@dataclass(frozen=True)
class PlannedTrial:
    """One trial to run (or reuse): the typed value, and the table rows that asked for it."""

    trial: Trial
    labels: tuple[tuple[str, str], ...]  # (table, row id), first = owner

    @property
    def key(self) -> str:
        return self.trial.key

    @property
    def name(self) -> str:
        table, row = self.labels[0]
        return f"{table}:{row}/seed-{self.trial.seed}"


@dataclass
class SweepPlan:
    mode: str  # "table" | "search"
    names: tuple[str, ...]  # tables (or the one search)
    budget: str
    trials: list[PlannedTrial]  # unique keys; search mode: []
    cells: dict[str, list[tuple[str, int, str]]]  # table -> (row id, seed, trial key), for reports
    science: dict[str, Any]  # flat science fields applied to every trial (budget + --set); search: the base
    context: RunContext  # run-context defaults (budget: log/ckpt/figures; test hooks)
    search_samples: int = 0
    search_seeds: int = 0
    options: SweepOptions = field(default_factory=SweepOptions)

    @property
    def requested(self) -> int:
        """Trials the tables ask for, before deduplication."""
        return sum(len(c) for c in self.cells.values())

    @property
    def n_trials(self) -> int:
        return len(self.trials) if self.mode == "table" else self.search_samples


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """--set KEY=VALUE for science fields (values stay strings: each field's own parser types them).

    Identity (seed, table, row) and plumbing cannot be set: a seed belongs to `--seeds`, a table to `--table`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SCIENCE_KEYS:
            raise PlanError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(SCIENCE_KEYS))}"
                            + (" (seeds come from --seeds)" if key == "seed" else ""))
        out[key] = value.strip()
    return out


def _tables(names: str) -> list[Any]:
    from srprior.search_spaces import get_table

    keys = ALL_TABLES if names.strip().lower() == "all" else [n for n in names.split(",") if n.strip()]
    try:
        return [get_table(n) for n in keys]
    except KeyError as exc:
        raise PlanError(f"--table: {exc.args[0]} (or 'all')") from None


def _data_fields(opts: SweepOptions, budget: Any) -> dict[str, Any]:
    data_root = opts.data_root
    if data_root is None and not budget.micro:  # micro budgets stay on the embedded images unless told
        data_root = os.environ.get("SRPRIOR_DATA") or None
    out: dict[str, Any] = {}
    for flag, key, folder in (("--data-root", "data_root", data_root), ("--train-root", "train_root",
                                                                         opts.train_root)):
        if folder:
            if not Path(folder).expanduser().is_dir():
                raise PlanError(f"{flag} {folder}: no such folder")
            out[key] = str(Path(folder).expanduser().resolve())
    if opts.benchmarks:
        out["benchmarks"] = opts.benchmarks
    if opts.no_di:
        out["di"] = False
    for key in ("steps", "max_eval_images"):
        if getattr(opts, key) is not None:
            out[key] = getattr(opts, key)
    return out


def make_plan(options: SweepOptions) -> SweepPlan:
    """Validate every option and build every trial (raises PlanError/ConfigError; starts nothing)."""
    from srprior.trainers.budgets import get_budget

    opts = SweepOptions.require(options, "make_plan")
    if bool(opts.table) == bool(opts.search):
        raise PlanError("give exactly one of --table NAME (or 'all') or --search NAME")
    try:
        budget = get_budget(opts.budget)
    except ValueError as exc:
        raise PlanError(f"--budget: {exc}") from None
    seeds = opts.seeds
    if seeds is not None and seeds < 1:
        raise PlanError(f"--seeds {seeds}: must be >= 1")
    seeds = seeds or budget.seeds
    sets = parse_sets(opts.set or [])
    user = {**_data_fields(opts, budget), **sets}  # what the user asked for wins over budget and table
    science = {**budget.science, **user}
    context = {**budget.context, "fault_kill_at_step": opts.fault_kill_at_step or 0,
               "cuda_graph": bool(opts.cuda_graph)}
    if opts.figures is not None:
        context["figures"] = bool(opts.figures)
    ctx = RunContext(**context)
    if opts.search:
        return _search_plan(opts, budget, science, ctx, seeds)
    rows = opts.rows.split(",") if opts.rows else None
    specs = _tables(opts.table)
    if rows and len(specs) > 1:
        raise PlanError("--rows needs a single --table")
    trials: dict[str, PlannedTrial] = {}
    cells: dict[str, list[tuple[str, int, str]]] = {}
    per_row = _row_seeds(opts.row_seeds)
    for spec in specs:
        try:
            table_cells = spec.cells(seeds=seeds, rows=rows or budget.table_rows(spec.name))
            if any(table == spec.name for table, _ in per_row):  # the sequential design's looks: more seeds
                table_cells = [c for row in dict.fromkeys(r.id for r, _, _ in table_cells)
                               for c in spec.cells(seeds=per_row.get((spec.name, row), seeds), rows=[row])]
        except KeyError as exc:
            raise PlanError(exc.args[0]) from None
        except ValueError as exc:
            raise PlanError(f"--budget: {exc}") from None
        cells[spec.name] = []
        for row, seed, overrides in table_cells:
            flat = {**overrides, **budget.science, **spec.budgets.get(budget.name, {}), **user,
                    "preset": budget.preset(overrides.get("preset", "edsr-t"))}
            if "preset" in sets:
                flat["preset"] = sets["preset"]
            trial = Trial(_precision(budget, user, trial_config(f"table {spec.name} row {row.id!r}", **flat)), seed)
            label = (spec.name, row.id)
            known = trials.get(trial.key)
            trials[trial.key] = PlannedTrial(trial, known.labels + (label,) if known else (label,))
            cells[spec.name].append((row.id, seed, trial.key))
    if ctx.cuda_graph and any(t.trial.config.optim.learning_rate_milestones for t in trials.values()):
        raise PlanError("--cuda-graph bakes the learning rate into the graph: it cannot follow a "
                        "learning_rate_milestones schedule (Table 4.8's thesis budget); drop --cuda-graph for it")
    return SweepPlan("table", tuple(cells), budget.name, list(trials.values()), cells, science, ctx,
                     options=opts)


def _precision(budget: Any, user: Mapping[str, Any], config: TrialConfig) -> TrialConfig:
    """A budget with precision "measured" trains each trial in bf16 only where efficiency.json measured the
    preset's step faster in bf16 (srprior.cost.measured_precision); `--set bf16=...` wins."""
    from srprior.cost import measured_precision

    if budget.precision != "measured" or "bf16" in user:
        return config
    bf16 = measured_precision(config.model.preset, config.prior.lambda_ap > 0)[0]
    return config if bf16 == config.model.bf16 else trial_config("", **{**config.flat(), "bf16": bf16})


def _row_seeds(items: Sequence[str]) -> dict[tuple[str, str], int]:
    """TABLE:ROW=N entries of SweepOptions.row_seeds -> {(table, row): N}."""
    out = {}
    for item in items:
        where, _, n = item.rpartition("=")
        table, _, row = where.partition(":")
        if not (table and row and n.isdigit() and int(n) >= 1):
            raise PlanError(f"row seeds {item!r}: expected TABLE:ROW=N with N >= 1")
        out[(table, row)] = int(n)
    return out


def plan_readings(plan: SweepPlan, table: str) -> dict[str, str]:
    """The readings in force over one table's trials of a plan (srprior.schema.readings_in_force)."""
    from srprior.schema import readings_in_force

    configs = {t.key: t.trial.config for t in plan.trials}
    return readings_in_force([configs[key] for _, _, key in plan.cells[table]])


def _search_plan(opts: SweepOptions, budget: Any, science: dict[str, Any], ctx: RunContext,
                 seeds: int | None) -> SweepPlan:
    from srprior.search_spaces.search import get_search

    try:
        spec = get_search(opts.search)
    except KeyError as exc:
        raise PlanError(exc.args[0]) from None
    from srprior.cost import measured_precision

    base = {**science, "preset": budget.preset(spec.preset), "scale": spec.scale}
    if budget.precision == "measured" and "bf16" not in science:  # λ_AP is sampled: bf16 only if faster in both
        base["bf16"] = all(measured_precision(base["preset"], prior)[0] for prior in (False, True))
    trial_config(f"search {spec.name}", **base)  # the constants and the budget, before Optuna adds its samples
    samples = opts.samples or spec.n_configs
    if samples < 1:
        raise PlanError(f"--samples {samples}: must be >= 1")
    n_seeds = seeds or spec.seeds
    return SweepPlan("search", (spec.name,), budget.name, [], {}, base, ctx, samples * n_seeds, n_seeds,
                     options=opts)


# Members per fused group when --fuse is not given: on a GPU small models leave the card idle (issue 12); on a
# CPU grouped convolutions are no faster than separate ones for tiny models (benchmarks/fused_throughput.py:
# edsr-t 0.8-0.9x), but micro models gain with K (batch 8, 16²: edsr-t-micro prior 1.43x at K = 4, 1.66x at 10;
# rnan-t-micro 1.12x, 1.24x), and every group saves a Ray Train start-up (~15 s).
DEFAULT_FUSE = {"cpu": ((1e5, 16), (float("inf"), 1)), "gpu": ((1e5, 16), (3e6, 8), (float("inf"), 1))}


def default_fuse(preset: str, device: str) -> int:
    n = _params(preset)
    return next(k for limit, k in DEFAULT_FUSE[device] if n < limit)


def group_key(config: TrialConfig) -> tuple:
    """Trials that can train as one fused network: same config except λ_AP and w (plain and prior members
    apart: a mixed group would pay the prior path for every member). A preset whose architecture says it does not
    fuse (BatchNorm: srprior.archs.edsr) trains alone."""
    flat = config.flat()
    flat.pop("w")
    flat["lambda_ap"] = flat["lambda_ap"] > 0
    return tuple(sorted((k, str(v)) for k, v in flat.items()))


def fuse_groups(trials: Sequence[PlannedTrial], fuse: int | None, device: str) -> list[list[PlannedTrial]]:
    """Fused groups in plan order, at most `fuse` members each (None: default_fuse per preset and device).

    The trials of one group key are split into as few groups as the limit allows, of near-equal sizes (20 at
    16: 10 + 10, not 16 + 4), so concurrent Ray Train runs finish together instead of one straggler."""
    from srprior.archs import fuses

    if fuse is not None and fuse < 1:
        raise PlanError(f"--fuse {fuse}: must be >= 1 (1: one trial per Ray Train run)")
    by_key: dict[tuple, list[int]] = {}  # (limit, group key) -> plan indices; (1, index) for a lone trial
    for i, t in enumerate(trials):
        preset = t.trial.config.model.preset
        limit = 1 if not fuses(preset) else fuse if fuse is not None else default_fuse(preset, device)
        by_key.setdefault((limit, group_key(t.trial.config)) if limit > 1 else (1, i), []).append(i)
    groups = []
    for (limit, _), idx in by_key.items():
        n = math.ceil(len(idx) / limit)
        groups += [idx[j * len(idx) // n:(j + 1) * len(idx) // n] for j in range(n)]
    return [[trials[i] for i in group] for group in sorted(groups)]  # by first member: plan order


def default_sweep_id(opts: SweepOptions) -> str:
    kind, name = ("table", opts.table) if opts.table else ("search", opts.search)
    return f"{kind}-{name.replace(',', '+')}-{opts.budget}-{time.strftime('%Y%m%d-%H%M%S')}"


@functools.lru_cache(maxsize=None)
def _params(preset: str) -> int:
    import torch

    from srprior.archs import build_model

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(preset, 2).parameters())
