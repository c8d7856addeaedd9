"""What a sweep will do, readable before any compute is spent (`--plan`), and what it would need
(`--seeds-for-power`); the resources it asks Ray for."""

from __future__ import annotations

from typing import Any

from srprior import contracts, tracking
from srprior.cost import plan_lines
from srprior.options import SweepOptions
from srprior.plan import SweepPlan
from srprior.sweep import SweepError
from srprior.sweep.plancost import evaluation_lines, precision_lines
from srprior.trainers.resources import Resources, plan_resources


def experiment(plan: SweepPlan, table: str | None = None) -> str:
    if plan.mode == "search":
        return contracts.search_experiment(plan.names[0])
    return contracts.table_experiment(table or plan.names[0])


def _models(plan: SweepPlan, trials: list) -> set[tuple[str, int]]:
    """(preset, scale) of every trial to run: the largest sets the default GPU share."""
    if plan.mode == "search":
        return {(plan.science["preset"], plan.science["scale"])}
    return {(t.trial.config.model.preset, t.trial.config.model.scale) for t in trials}


def format_plan(plan: SweepPlan, existing: dict[str, Any], to_train: list, res: Resources | None,
                device: str, retrain: bool, groups: list[list] | None = None, detail: bool = True) -> str:
    """What will happen, readable before any compute is spent (`detail`: the cost model per preset, --plan's)."""
    out = [f"Plan: {plan.mode} {', '.join(plan.names)} · budget {plan.budget}"]
    if plan.mode == "search":
        out.append(f"  {plan.n_trials} trials = {plan.search_samples // plan.search_seeds} Optuna configurations "
                   f"× {plan.search_seeds} seeds (objective: mean {contracts.OBJECTIVE})")
    else:
        out += _table_lines(plan, existing, to_train, retrain)
    if groups and any(len(g) > 1 for g in groups):
        sizes = sorted({len(g) for g in groups}, reverse=True)
        out.append(f"  fused: {len(to_train)} trials in {len(groups)} Ray Train runs (groups of "
                   f"{', '.join(map(str, sizes))} members; --fuse 1: one run per trial)")
    if res is not None and (to_train or plan.mode == "search"):
        gpu = f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
        out.append(f"  resources per Ray Train run: {res.workers} worker(s) × {res.cpus_per_worker:g} CPU{gpu}; "
                   f"{res.max_concurrent} at once")
    out += precision_lines(plan, to_train) if detail else []
    if plan.mode == "table" and to_train:
        out += plan_lines(to_train, device, res.max_concurrent if res else 1, groups or None,
                          plan.context.cuda_graph, detail, plan.context.ckpt_every)
        if detail:
            out += evaluation_lines(plan, to_train)
        if not detail:
            out.append("    (`--plan` shows the cost model: FLOPs and TFLOP/s per preset, and the H100 estimate)")
        else:
            from srprior.designs import design_lines

            out += design_lines(plan)
    return "\n".join(out)


def _table_lines(plan: SweepPlan, existing: dict[str, Any], to_train: list, retrain: bool) -> list[str]:
    """The plan view of a table sweep: cells, trials, reuse, models, per-trial work, shared and reused runs."""
    finished = [t for t in plan.trials if t.key in existing and existing[t.key].info.status == "FINISHED"]
    resumed = [t for t in to_train if t.key in existing and not retrain]
    shared = [t for t in plan.trials if len(t.labels) > 1]
    models = sorted({(t.trial.config.model.preset, t.trial.config.model.scale) for t in plan.trials})
    configs = {t.trial.config.hash for t in plan.trials}
    out = [f"  table cells (row × seed): {plan.requested}; distinct trials (science config, seed): "
           f"{len(plan.trials)}; distinct configurations: {len(configs)}",
           f"  to train: {len(to_train)}{' (--retrain: all, into new runs)' if retrain else ''}"
           f" · reused (FINISHED in MLflow): {0 if retrain else len(finished)}"
           f" · resumed (unfinished run continues): {len(resumed)}",
           f"  models: {', '.join(f'{p} (x{s})' for p, s in models)}"]
    if plan.trials:
        sched, per_row = plan.trials[0].trial.config.schedule, {}
        for row, _, _ in (c for cells in plan.cells.values() for c in cells):
            per_row[row] = per_row.get(row, 0) + 1
        low, high = min(per_row.values()), max(per_row.values())
        out.append(f"  per trial: {sched.steps:,} steps × batch {sched.batch} × {sched.lr_patch}×{sched.lr_patch} "
                   f"LR patches; seeds per row: {low}" + (f"-{high}" if high > low else ""))
    if shared:
        by_config: dict[tuple, list[int]] = {}
        for t in shared:
            by_config.setdefault((t.trial.config.hash, t.labels), []).append(t.trial.seed)
        out.append(f"  shared by several table rows (trained once): {len(shared)} trials")
        out += [f"    {' = '.join(f'{tb}:{row}' for tb, row in labels)} · seeds {','.join(map(str, seeds))}"
                for (_, labels), seeds in list(by_config.items())[:12]]
        if len(by_config) > 12:
            out.append(f"    … and {len(by_config) - 12} more configurations")
    if finished and not retrain:
        out.append(f"  reused from earlier sweeps: {len(finished)}")
        out += [f"    {t.name} ← run {existing[t.key].info.run_id[:12]} "
                f"({existing[t.key].data.tags.get(contracts.SWEEP_ID, '?')})" for t in finished[:12]]
        if len(finished) > 12:
            out.append(f"    … and {len(finished) - 12} more")
    return out


def resources(plan: SweepPlan, to_train: list, opts: SweepOptions, cpus: float, gpus: float,
               n_runs: int | None = None) -> Resources:
    n = plan.n_trials if plan.mode == "search" else max(1, n_runs or len(to_train))
    return plan_resources(n, _models(plan, to_train or plan.trials), cpus, gpus, opts.workers,
                          opts.gpus_per_trial, opts.max_concurrent)


def print_seed_plan(plan: SweepPlan, opts: SweepOptions, uri: str) -> int:
    """--seeds-for-power EFFECT: seeds per row for each table from its finished runs; nothing is trained."""
    from srprior.report.model import ReportError, collect
    from srprior.report.power import seeds_for_power
    from srprior.search_spaces import get_table

    effect = opts.seeds_for_power
    if plan.mode != "table" or not effect > 0:
        raise SweepError("--seeds-for-power EFFECT needs --table and an effect > 0 (e.g. 0.05 for 0.05 dB)")
    needed = []
    for name in plan.names:
        spec = get_table(name)
        try:
            values, _ = collect(spec, uri, plan.cells[name])
        except ReportError:  # no store or no finished runs yet: the thesis's spread sizes it
            values = {}
        sp = seeds_for_power(spec, values, effect)
        needed.append(sp.seeds)
        print(f"table {name}: {sp.seeds if sp.seeds else '—'} seeds per row to detect {effect:g} on {sp.metric} "
              f"with 80% power (α = 0.05, {sp.test} test; pooled std {sp.std:.4f} from {sp.source})")
    if all(needed):
        others = " ".join(f"--{k.replace('_', '-')} {getattr(opts, k)}"
                          for k in ("budget", "output_dir", "data_root", "train_root") if getattr(opts, k))
        print(f"run: {tracking.command('sweep', '--table', ','.join(plan.names))} {others} --seeds {max(needed)}"
              "   (runs already finished are reused: only the added seeds train)")
    return 0
