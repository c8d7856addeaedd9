"""`srprior sweep` / `python sweep.py`: thesis tables (or an Optuna search) as Ray Tune trials of Ray Train runs.

Order of work: the plan (srprior.plan: every option and every trial validated, no Ray) → the MLflow store is
asked which trial keys are already FINISHED (reused: not trained again, by any table or search) or unfinished
(resumed: same MLflow run, same Train checkpoint folder) → `--plan` stops here and prints it → otherwise the
MLflow server and, only when something is left to train, Ray start → Tune runs one trial per key to train (or
Optuna's TPE suggestions × seeds with Repeater) → a report per table is printed and logged to the sweep's parent
run → the UI command is printed last. `--retrain` trains every planned trial again into new runs tagged
srprior.retrain.

Resources: srprior.trainers.resources (fractional CPUs/GPUs per trial, concurrency).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from srprior import contracts, credentials, exposure, locks, preflight, tracking
from srprior.errors import Parser, float_in, int_in, run_command
from srprior.cost import plan_lines
from srprior.plan import SweepPlan, default_sweep_id, fuse_groups, make_plan, plan_readings
from srprior.schema import trial_config
from srprior.trainers.health import is_diverged
from srprior.trainers.resources import DRIVER_CPU, Resources, SweepError, plan_resources

STATE_FILE = "srprior-sweep.json"  # in <storage>/<sweep id>/: what --resume needs
# Local runs: no MLflow run URL per trial on stdout; Train's controller notices a finished worker within 0.5 s
# instead of 2 s (seconds per trial when trials last tens of seconds).
LOCAL_ENV = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
RUNTIME_OPTIONS = ("resume", "max_concurrent", "address", "num_cpus", "max_failures", "output_dir", "plan",
                   "retrain", "seeds_for_power", "verbose", "shared_storage")


def _storage(value: str | None, output: Path) -> str:
    preflight.check_storage(value)
    if value and "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve() if value else output / "ray")


def find_sweep(storage: str, name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """The stored options of sweep `name` ('latest': newest sweep, of the same table/search when given)."""
    root = Path(storage)
    if name != "latest":
        state = root / name / STATE_FILE
        if not state.is_file():
            raise SweepError(f"--resume {name}: no sweep state {state}; sweeps here: "
                             f"{', '.join(p.parent.name for p in root.glob('*/' + STATE_FILE)) or 'none'}")
        return json.loads(state.read_text())
    states = sorted(root.glob("*/" + STATE_FILE), key=lambda p: p.stat().st_mtime, reverse=True)
    for state in states:
        stored = json.loads(state.read_text())
        if all(not opts.get(k) or stored.get(k) == opts[k] for k in ("table", "search")):
            return stored
    raise SweepError(f"--resume: no sweep to resume under {root}")


def _resume_options(opts: dict[str, Any]) -> dict[str, Any]:
    output = tracking.output_dir(opts.get("output_dir"))
    stored = find_sweep(_storage(opts.get("storage"), output), opts["resume"], opts)
    return {**stored, **{k: opts[k] for k in RUNTIME_OPTIONS if opts.get(k) is not None}}


def _cluster_address(opts: dict[str, Any]) -> str | None:
    """--address, $RAY_ADDRESS or a cluster started by `ray start`/`ray up` on this node; None (also for
    --address local): start Ray here."""
    if opts.get("address"):
        return None if opts["address"] == "local" else opts["address"]
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Tune's default embeds the whole config in the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


# ---------------------------------------------------------------------------------------------- plan
def _experiment(plan: SweepPlan, table: str | None = None) -> str:
    if plan.mode == "search":
        return contracts.search_experiment(plan.names[0])
    return contracts.table_experiment(table or plan.names[0])


def _models(plan: SweepPlan, trials: list) -> set[tuple[str, int]]:
    """(preset, scale) of every trial to run: the largest sets the default GPU share."""
    if plan.mode == "search":
        return {(plan.science["preset"], plan.science["scale"])}
    return {(t.trial.config.model.preset, t.trial.config.model.scale) for t in trials}


def format_plan(plan: SweepPlan, existing: dict[str, Any], to_train: list, res: Resources | None,
                device: str, retrain: bool, groups: list[list] | None = None) -> str:
    """What will happen, readable before any compute is spent."""
    out = [f"Plan: {plan.mode} {', '.join(plan.names)} · budget {plan.budget}"]
    if plan.mode == "search":
        out.append(f"  {plan.n_trials} trials = {plan.search_samples // plan.search_seeds} Optuna configurations "
                   f"× {plan.search_seeds} seeds (objective: mean {contracts.OBJECTIVE})")
    else:
        finished = [t for t in plan.trials if t.key in existing and existing[t.key].info.status == "FINISHED"]
        resumed = [t for t in to_train if t.key in existing and not retrain]
        shared = [t for t in plan.trials if len(t.labels) > 1]
        models = sorted({(t.trial.config.model.preset, t.trial.config.model.scale) for t in plan.trials})
        configs = {t.trial.config.hash for t in plan.trials}
        out += [f"  table cells (row × seed): {plan.requested}; distinct trials (science config, seed): "
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
    if groups and any(len(g) > 1 for g in groups):
        sizes = sorted({len(g) for g in groups}, reverse=True)
        out.append(f"  fused: {len(to_train)} trials in {len(groups)} Ray Train runs (groups of "
                   f"{', '.join(map(str, sizes))} members; --fuse 1: one run per trial)")
    if res is not None and (to_train or plan.mode == "search"):
        gpu = f" + {res.gpus_per_worker:g} GPU" if res.gpus_per_worker else ""
        out.append(f"  resources per Ray Train run: {res.workers} worker(s) × {res.cpus_per_worker:g} CPU{gpu}; "
                   f"{res.max_concurrent} at once")
    if plan.mode == "table" and to_train:
        out += plan_lines(to_train, device, res.max_concurrent if res else 1, len(groups) if groups else None,
                          plan.context.cuda_graph)
    return "\n".join(out)


def _resources(plan: SweepPlan, to_train: list, opts: dict[str, Any], cpus: float, gpus: float,
               n_runs: int | None = None) -> Resources:
    n = plan.n_trials if plan.mode == "search" else max(1, n_runs or len(to_train))
    return plan_resources(n, _models(plan, to_train or plan.trials), cpus, gpus, opts.get("workers") or 1,
                          opts.get("gpus_per_trial"), opts.get("max_concurrent"))


# ---------------------------------------------------------------------------------------------- launch
def _search_space(trial: Any, search: Any) -> dict[str, Any]:
    """Optuna define-by-run over the search's ranges; its constants (preset, scale) are already in the plan's
    base science, with the budget's preset swap applied."""
    from srprior.search_spaces.search import define_space

    define_space(trial, search)
    return {}


def _tuner(plan: SweepPlan, sweep_id: str, storage: str, groups: list[list], context: Any,
           parents: dict[str, str], existing: dict[str, Any], restore: bool, max_failures: int, max_concurrent: int,
           callbacks: list, verbose: bool, stopper: Any = None):
    import ray.tune
    from ray.tune.search import Repeater

    from srprior.trainers.driver import train_driver

    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(train_driver, science=plan.science, context=context,
                                 storage_path=f"{storage}/train", max_failures=max_failures), {"CPU": DRIVER_CPU})
    path = f"{storage}/{sweep_id}"
    if plan.mode == "search" and restore and ray.tune.Tuner.can_restore(path):
        return ray.tune.Tuner.restore(path, trainable, resume_errored=True)
    name, scheduler, search_alg = sweep_id, None, None
    if plan.mode == "table":
        if list(Path(path).glob("experiment_state-*.json")):  # a resumed table sweep: a fresh Tune run
            name = f"{sweep_id}-resume-{time.strftime('%Y%m%d-%H%M%S')}"
        def entry(t: Any) -> dict[str, Any]:
            table, run = t.labels[0][0], existing.get(t.key)
            return {"trial": t.trial.to_dict(), "labels": [list(x) for x in t.labels],
                    "experiment": _experiment(plan, table), "parent_run_id": parents[table],
                    "resume_run_id": run.info.run_id if run is not None and not context.retrain else None}

        configs = [{"members": [entry(t) for t in group]} for group in groups]
        space, samples = {"trial": ray.tune.grid_search(configs)}, 1
    else:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from srprior.search_spaces.search import get_search

        spec = get_search(plan.names[0])
        searcher = OptunaSearch(space=partial(_search_space, search=spec), metric=spec.metric, mode=spec.mode,
                                sampler=optuna.samplers.TPESampler(seed=0))
        search_alg, space, samples = Repeater(searcher, repeat=plan.search_seeds, set_index=True), None, \
            plan.search_samples
        if plan.options.get("asha"):  # Repeater's docs advise against early stopping; opt-in only
            scheduler = ray.tune.schedulers.ASHAScheduler(time_attr="training_iteration", grace_period=1)
    return ray.tune.Tuner(
        trainable, param_space=space,
        tune_config=ray.tune.TuneConfig(metric=contracts.OBJECTIVE, mode="max", num_samples=samples,
                                        search_alg=search_alg, scheduler=scheduler,
                                        max_concurrent_trials=max_concurrent,
                                        trial_dirname_creator=trial_dirname),
        run_config=ray.tune.RunConfig(name=name, storage_path=storage, verbose=1 if verbose else 0,
                                      callbacks=callbacks, stop=stopper,
                                      failure_config=ray.tune.FailureConfig(max_failures=1)))


def _parent_runs(plan: SweepPlan, sweep_id: str, uri: str, opts: dict[str, Any]) -> dict[str, str]:
    """One parent run per table (or the search) of this sweep, tagged with the options that rebuild its plan."""
    from mlflow.entities import Param, RunTag

    client = tracking.client(uri)
    stored = {k: v for k, v in opts.items() if v is not None and k not in RUNTIME_OPTIONS}
    parents = {}
    for name in plan.names:
        exp = tracking.experiment_id(client, _experiment(plan, name), description=_description(plan, name))
        key = {contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep_id}
        run_id = tracking.get_or_create_run(client, exp, key, sweep_id, {plan.mode: name, "budget": plan.budget})
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in stored.items()],
                         tags=[RunTag(contracts.OPTIONS_TAG, json.dumps(stored, default=str))])
        if plan.mode == "table":  # what the report looks for: these cells, never a plan rebuilt by later code
            client.log_dict(run_id, {"cells": plan.cells[name], "readings": plan_readings(plan, name)},
                            contracts.CELLS_ARTIFACT)
        parents[name] = run_id
    return parents


def _description(plan: SweepPlan, name: str) -> str:
    """The MLflow experiment's description: what the table is and where the thesis has it."""
    if plan.mode == "search":
        return (f"Optuna search {name}: λ_AP, w, N_SSR and the scenario of the attribution prior, each "
                "configuration over several seeds; objective: mean validation PSNR.")
    from srprior.search_spaces import get_table

    spec = get_table(name)
    where = f"Thesis Table {spec.name}" if spec.name[0].isdigit() else f"srprior table '{spec.name}'"
    return (f"{where}: {spec.title}. {spec.description} One run per (science config, seed), found by its key "
            "(srprior.run_key); the report of each sweep is an artifact of its parent run.")


def _reports(plan: SweepPlan, sweep_id: str, uri: str, store: str, output: Path, parents: dict[str, str],
             resume: str | None) -> str:
    """Every table's report: files written and logged to its parent run (with a summary plot); the terminal
    view of each returned."""
    from srprior.report.model import ReportError, build_report
    from srprior.report.render import runs_view_metrics, to_terminal
    from srprior.report.search import search_report
    from srprior.report.write import write_report
    from srprior.search_spaces import get_table

    texts = []
    for name in plan.names:
        try:
            if plan.mode == "search":
                report = replace(search_report(name, uri, sweep_id), parent_run_id=parents[name])
            else:
                report = build_report(get_table(name), uri, plan.cells[name], sweep_id, parents.get(name),
                                      plan_readings(plan, name))
        except ReportError as exc:
            texts.append(f"no report for {plan.mode} {name}: {exc}")
            continue
        paths = write_report(replace(report, tracking_uri=store), output / "reports" / sweep_id,
                             tracking_uri=uri)
        if plan.mode == "table" and name in parents:  # the link `srprior ui` prints opens this view
            client = tracking.client(uri)
            tracking.save_runs_view(client, client.get_run(parents[name]).info.experiment_id,
                                    runs_view_metrics(report))
        texts.append(to_terminal(report, paths, resume, budget_caption(plan)))
    return "\n".join(texts)


def budget_caption(plan: SweepPlan) -> str:
    """The budget's caption (what its numbers can and cannot show) with this plan's steps filled in."""
    from srprior.trainers.budgets import get_budget

    return get_budget(plan.budget).caption.format(steps=plan.science.get("steps", "?"))


def _print_seed_plan(plan: SweepPlan, opts: dict[str, Any], uri: str) -> int:
    """--seeds-for-power EFFECT: seeds per row for each table from its finished runs; nothing is trained."""
    from srprior.report.model import ReportError, collect
    from srprior.report.power import seeds_for_power
    from srprior.search_spaces import get_table

    effect = opts["seeds_for_power"]
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
              f"with 80% power (α = 0.05; pooled std {sp.std:.4f} from {sp.source})")
    if all(needed):
        others = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in opts.items()
                          if k in ("budget", "output_dir", "data_root", "train_root") and v)
        print(f"run: {tracking.command('sweep', '--table', ','.join(plan.names))} {others} --seeds {max(needed)}"
              "   (runs already finished are reused: only the added seeds train)")
    return 0


def start_local_ray(num_cpus: int, verbose: bool = True) -> None:
    """A local Ray with the dashboard on (Train V2's cleanup needs the State API) and LOCAL_ENV inherited;
    quiet (srprior.progress.quiet_ray) unless verbose; every Ray port on 127.0.0.1 (srprior.exposure)."""
    import ray

    from srprior.progress import quiet_ray

    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    exposure.loopback_ray()
    ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
             **({} if verbose else quiet_ray(num_cpus)))
    exposure.tighten_token()


def _failed(uri: str, trials: list) -> list[str]:
    """One line per trial of this sweep whose run ended FAILED (diverged, bad data): the report shows them as
    failed, never as values."""
    runs = tracking.runs_by_key(uri, {t.key for t in trials})
    return [f"  {t.name} (run {runs[t.key].info.run_id[:12]}): {runs[t.key].data.tags.get(contracts.FAILURE, '?')}"
            for t in trials if t.key in runs and runs[t.key].info.status == "FAILED"]


def run_sweep(opts: dict[str, Any]) -> int:
    """The whole sweep (see the module docstring); uses an already initialised Ray session when there is one."""
    import ray

    resume = bool(opts.get("resume"))
    if resume:
        preflight.check_name("--resume", opts["resume"])
        opts = _resume_options(opts)
    plan = make_plan(opts)
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    sweep_id = preflight.check_name("--name", opts.get("name") or default_sweep_id(opts))
    opts = {**opts, "name": sweep_id}
    output = tracking.output_dir(opts.get("output_dir"))
    storage = _storage(opts.get("storage"), output)
    retrain = bool(opts.get("retrain"))
    user_uri = tracking.user_tracking_uri()
    store_uri = user_uri or tracking.default_tracking_uri(output)
    existing = tracking.runs_by_key(store_uri, {t.key for t in plan.trials}) if plan.mode == "table" else {}
    diverged = [] if retrain else [t for t in plan.trials if t.key in existing and existing[t.key].info.status ==
                                   "FAILED" and is_diverged(existing[t.key].data.tags.get(contracts.FAILURE))]
    to_train = [t for t in plan.trials if t not in diverged and
                (retrain or t.key not in existing or existing[t.key].info.status != "FINISHED")]
    owns_ray = not ray.is_initialized()
    address = _cluster_address(opts) if owns_ray else None
    local_cpus = int(opts.get("num_cpus") or os.cpu_count() or 1)
    needs_ray = plan.mode == "search" or bool(to_train)
    res, gpus = None, _local_gpus() if address is None else 1
    device = "gpu" if gpus else "cpu"
    if (opts.get("workers") or 1) > 1 and (opts.get("fuse") or 1) > 1:
        raise SweepError("--fuse K > 1 trains K trials in one worker: it cannot be combined with --workers > 1")
    fuse = 1 if (opts.get("workers") or 1) > 1 else opts.get("fuse")
    groups = fuse_groups(to_train, fuse, device)
    if owns_ray and address is None:  # checked before anything starts
        res = _resources(plan, to_train, opts, local_cpus, gpus, len(groups))
    folders = (output,) if "://" in storage else (output, Path(storage))
    if opts.get("seeds_for_power") is None:  # --plan runs the sweep's checks: it claims to validate everything
        preflight.check_free_space(folders)
        preflight.check_data([t.trial.config for t in to_train] if plan.mode == "table" else
                             [trial_config("search", **plan.science)])
    if opts.get("plan"):
        print(format_plan(plan, existing, to_train, res, device, retrain, groups))
        return 0
    if opts.get("seeds_for_power") is not None:
        return _print_seed_plan(plan, opts, store_uri)
    if not output.exists():
        output.mkdir(mode=0o700, parents=True)  # the store, checkpoints and reports: the user's alone
    with locks.sweep_lease(output, sweep_id):
        if plan.mode == "table":
            locks.mark_orphaned_runs(store_uri, list(existing.values()), output, sweep_id)
            if not retrain:  # reused runs gain the sets built after they finished (no retraining)
                _evaluate_later(store_uri, output, {t.key: existing[t.key] for t in plan.trials
                                                    if t.key in existing and t not in to_train})
        return _launch(plan, opts, sweep_id, output, storage, existing, to_train, diverged, groups, res, device,
                       owns_ray, address, local_cpus, needs_ray, resume, retrain, user_uri, folders)


def _evaluate_later(uri: str, output: Path, reused: dict[str, Any]) -> None:
    from srprior.trainers.backfill import backfill

    for line in backfill(uri, output, reused):
        print(f"evaluated later: {line}", flush=True)


def _launch(plan: SweepPlan, opts: dict[str, Any], sweep_id: str, output: Path, storage: str,
            existing: dict[str, Any], to_train: list, diverged: list, groups: list, res: Resources | None,
            device: str, owns_ray: bool, address: str | None, local_cpus: int, needs_ray: bool, resume: bool,
            retrain: bool, user_uri: str | None, folders: tuple[Path, ...]) -> int:
    """Servers, Ray, Tune and the reports of a checked sweep (run_sweep holds its lease)."""
    import ray

    from srprior.stopping import SignalStop
    from srprior.watchdog import Watchdog

    state = Path(storage) / sweep_id / STATE_FILE
    if not resume and state.exists():
        raise SweepError(f"sweep {sweep_id!r} exists under {storage}; use --resume {sweep_id} or another --name")
    uri, server, unfinished, n_run, failed, stopped = user_uri, None, 0, 0, [], None
    verbose = bool(opts.get("verbose"))
    resume_cmd = tracking.command("sweep", "--resume", sweep_id, "--output-dir", str(output),
                                  *(("--storage", opts["storage"]) if opts.get("storage") else ()))
    backend, log = tracking.default_tracking_uri(output), output / "mlflow-server.log"
    if uri is None and address is None:  # the platform's store, behind a server: concurrent trials never lock it
        server = tracking.TrackingServer(backend, tracking.artifacts_dir(output), log=log).launch()
    auth = credentials.for_sweep(output, uri is None and address is not None, uri)  # clusters: basic auth
    signals = SignalStop().__enter__()
    try:
        if needs_ray and owns_ray and address is None:
            start_local_ray(local_cpus, verbose)
        elif needs_ray and owns_ray:
            from srprior.progress import quiet_ray

            ray.init(address=address, runtime_env=credentials.runtime_env(), **({} if verbose else quiet_ray()))
        signals.install()  # over Ray's native handler (a stack dump instead of the summary)
        if needs_ray and (not owns_ray or address is not None):
            total = ray.cluster_resources()
            res = _resources(plan, to_train, opts, total.get("CPU", 0), total.get("GPU", 0), len(groups))
            if res.cpus_per_worker >= 1:  # whole CPUs leave room for other sweeps' drivers (else each waits for
                res = replace(res, cpus_per_worker=float(int(res.cpus_per_worker)))  # 3.9 of 4 CPUs: deadlock)
            exposure.check_cluster_storage(storage, sum(n["Alive"] for n in ray.nodes()),
                                           bool(opts.get("shared_storage")))
        if not resume and "://" not in storage:  # what --resume needs, once the sweep can start
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(opts, indent=1, default=str))
        if uri is None and server is None:  # joined a cluster: the server binds the head's node address
            host = exposure.server_host(ray.util.get_node_ip_address())
            server = tracking.TrackingServer(backend, tracking.artifacts_dir(output), host=host, log=log,
                                             auth=auth).launch()
        if server is not None:
            server.wait()
            uri = server.url
        parents = _parent_runs(plan, sweep_id, uri, opts)
        print(format_plan(plan, existing, to_train, res, device, retrain, groups), flush=True)
        if diverged:
            print(f"  not trained again (diverged before; --retrain to try): {', '.join(t.name for t in diverged)}")
        progress = None
        if needs_ray:
            context = plan.context.replace(
                tracking_uri=uri, experiment=_experiment(plan), sweep_id=sweep_id, retrain=retrain,
                parent_run_id=parents[plan.names[0]], num_workers=res.workers, cpus_per_worker=res.cpus_per_worker,
                gpus_per_worker=res.gpus_per_worker, use_gpu=res.gpus_per_worker > 0)
            max_failures = 3 if opts.get("max_failures") is None else opts["max_failures"]
            n_run = plan.n_trials if plan.mode == "search" else len(groups)
            callbacks = []
            if not verbose:
                from srprior.progress import SweepProgress

                runs = ([(len(g), g[0].trial.config.schedule.steps) for g in groups] if plan.mode == "table" else
                        [(1, int(plan.science.get("steps", 0)))] * plan.n_trials)
                progress = SweepProgress(runs, len(plan.trials) - len(to_train))
                callbacks.append(progress)
            try:
                with Watchdog(uri if tracking.is_remote(uri) else None, server and server.proc, log,
                              folders + _ray_temp(owns_ray and address is None)) as watch:
                    signals.tuning = True
                    try:
                        results = _tuner(plan, sweep_id, storage, groups, context, parents, existing, resume,
                                         max_failures, res.max_concurrent, callbacks, verbose, watch.stopper()).fit()
                    except Exception:  # noqa: BLE001 - e.g. Tune cannot save its state on the full disk it stops for
                        if watch.reason is None:
                            raise
                        results = None
            finally:
                signals.tuning = False
                if progress is not None:
                    progress.close()
            stopped = watch.reason or signals.reason
            unfinished = n_run - (results.num_terminated if results else 0)  # errored, or stopped by Ctrl-C
        if stopped is None:
            failed = _failed(uri, to_train + diverged) if plan.mode == "table" else []
            store = uri if server is None else server.backend_uri
            print(_reports(plan, sweep_id, uri, store, output, parents,
                           resume_cmd if unfinished or failed else None))
            client = tracking.client(uri)
            for run_id in parents.values():
                client.set_terminated(run_id, "FAILED" if unfinished or failed else "FINISHED")
    except KeyboardInterrupt:
        if signals.reason is None:
            raise
        stopped = signals.reason
    finally:
        signals.__exit__()
        if owns_ray and ray.is_initialized():
            ray.shutdown()
        if not (stopped or "").startswith("disk full"):  # nothing can be written: the next sweep marks them
            _mark_owned(uri, server, sweep_id, stopped or "the sweep ended before the run finished")
        if server is not None:
            server.stop()
    if stopped is not None and stopped == signals.reason:
        counts = f" before {unfinished} of {n_run} Ray Train run(s) finished" if unfinished else ""
        print(f"INCOMPLETE: {stopped}{counts}; resume with: {resume_cmd}", flush=True)
        return 1
    if stopped is not None:
        print(f"srprior sweep: error: {stopped}; the sweep stopped, resume with: {resume_cmd}", file=sys.stderr)
        return 1
    if failed:
        print(f"{len(failed)} trial(s) FAILED (in the report as failed, not as values):\n" + "\n".join(failed),
              file=sys.stderr)
    if unfinished:
        print(f"INCOMPLETE: {unfinished} of {n_run} Ray Train run(s) did not finish; resume with: {resume_cmd}")
    print(f"Open the MLflow UI: {tracking.ui_command(output)}")
    return 1 if unfinished or failed else 0


def _mark_owned(uri: str | None, server: Any, sweep_id: str, reason: str) -> None:
    """The runs this sweep leaves RUNNING end KILLED (srprior.stopping): through the server while it lives, else
    straight into the store behind it; a store that cannot be reached leaves them to the next sweep."""
    from srprior.stopping import mark_owned_runs

    if server is not None and (uri is None or server.proc.poll() is not None):
        uri = server.backend_uri
    if uri is None or (server is None and tracking.is_remote(uri) and not _answers(uri)):
        return
    try:
        mark_owned_runs(uri, sweep_id, reason)
    except Exception as exc:  # noqa: BLE001 - the sweep's own outcome is what the user must see
        print(f"srprior sweep: warning: could not mark this sweep's unfinished runs KILLED ({exc}); the next "
              "sweep of these trials marks them", file=sys.stderr)


def _ray_temp(local: bool) -> tuple[Path, ...]:
    """The temp folder of the local Ray this sweep started (logs, spilled objects): watched for a full disk."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None) if local else None
    return (Path(node.get_temp_dir_path()),) if node is not None else ()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from srprior.plan import ALL_TABLES

    what = p.add_mutually_exclusive_group()
    what.add_argument("--table", help=f"thesis table(s) to reproduce: {', '.join(ALL_TABLES)}, smoke, "
                                      "comma-separated, or 'all'")
    what.add_argument("--search", help="Optuna search to run: edsr-t, rnan-t, smoke")
    p.add_argument("--budget", default="smoke", help="smoke (CPU, minutes), short (GPU, ~10 min/trial), thesis "
                                                     "(default: smoke)")
    p.add_argument("--plan", action="store_true", help="print the plan (trials to train, reused, resources, "
                                                        "estimated cost) and exit: no Ray, nothing written")
    p.add_argument("--retrain", action="store_true", help="train every planned trial again into new runs "
                                                          "(default: reuse FINISHED runs with the same key)")
    p.add_argument("--seeds", type=int_in(1, 1000),
                   help="seeds per row / per sampled config (default: the budget's); more seeds than a row has add "
                        "new ones, and only those train")
    p.add_argument("--seeds-for-power", type=float_in(0, 100, low_open=True), metavar="EFFECT",
                   help="print the seeds per row each table needs to detect EFFECT (dB) with 80%% power, sized "
                        "from its finished runs (or the thesis's spread), and exit")
    p.add_argument("--rows", help="comma-separated row ids to run (default: all)")
    p.add_argument("--samples", type=int_in(1, 10**5), help="search: configurations to sample (default: the search's)")
    p.add_argument("--asha", action="store_true", help="search: ASHA early stopping (not advised with seeds)")
    p.add_argument("--steps", type=int_in(1, 10**8), help="training steps per trial (default: the budget's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a science field of every trial, e.g. lambda_ap=1e-4, n_ssr=3, learning_rate=2e-4")
    p.add_argument("--data-root", help="benchmarks in the EDSR layout (default $SRPRIOR_DATA; smoke: embedded)")
    p.add_argument("--train-root", help="DIV2K root or HR image folder (default: the embedded images)")
    p.add_argument("--benchmarks", help="comma-separated subset of set5,set14,bsd100,urban100,hardcases")
    p.add_argument("--max-eval-images", type=int_in(0, 10**6), help="first N images per evaluation set (0: all)")
    p.add_argument("--no-di", action="store_true", help="skip the LAM diffusion index")
    p.add_argument("--figures", action=argparse.BooleanOptionalAction,
                   help="per-trial PNGs: bicubic | SR | HR, the extractor's PoI/SSRs on the SSM, the LAM map "
                        "(default: the budget's; on in every budget, about 1 s per trial)")
    p.add_argument("--cuda-graph", action="store_true", help="capture each one-worker trial's step as a CUDA graph")
    p.add_argument("--output-dir", help="MLflow store, Ray results, reports (default: $SRPRIOR_OUTPUT, in a Ray "
                                        "job ~/srprior-outputs, else ./outputs)")
    p.add_argument("--storage", help="Ray storage (default <output-dir>/ray; NFS path or s3:// on clusters)")
    p.add_argument("--shared-storage", action="store_true", help="--storage is a folder mounted on every node "
                                                                 "(NFS): allow it on a multi-node cluster")
    p.add_argument("--name", help="sweep id (default <table|search>-<name>-<budget>-<time>)")
    p.add_argument("--resume", nargs="?", const="latest", help="resume sweep NAME (default: the latest)")
    p.add_argument("--workers", type=int_in(1, 1024), help="Ray Train workers (DDP ranks) per trial (default 1)")
    p.add_argument("--fuse", type=int_in(1, 256),
                   help="train up to K trials of one architecture as one fused network in one Ray Train run "
                        "(default: 16/8 for small models on a GPU, 4 for micro models on a CPU, else 1)")
    p.add_argument("--gpus-per-trial", type=float_in(0, 1024),
                   help="GPU share per trial (default: from the model size)")
    p.add_argument("--max-concurrent", type=int_in(1, 10**4), help="trials at once (default: what the resources fit)")
    p.add_argument("--num-cpus", type=int_in(1, 10**5), help="CPUs for a local Ray (default: all)")
    p.add_argument("--address", type=_address, help="Ray cluster to join (default: $RAY_ADDRESS or a running "
                                                    "`ray start`; 'local': always start a private Ray)")
    p.add_argument("--max-failures", type=int_in(0, 100),
                   help="worker restarts per trial from its checkpoint (default 3)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own output (trial tables, worker logs) "
                                                          "instead of srprior's progress line")
    p.add_argument("--fault-kill-at-step", type=int_in(0), help=argparse.SUPPRESS)  # tests: kill a worker once


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run thesis tables or an Optuna search on Ray, tracked in MLflow")
    add_arguments(p)
    p.set_defaults(func=lambda args: _run(vars(args)))


def _address(text: str) -> str:
    """--address: 'local', 'auto' or HOST:PORT (Ray's own parser raises a traceback on anything else)."""
    host, sep, port = text.rpartition(":")
    if text in ("local", "auto") or (sep and host and port.isdigit() and 0 < int(port) < 65536):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not 'local', 'auto' or HOST:PORT (e.g. 10.0.0.10:6379)")


def _run(opts: dict[str, Any]) -> int:
    opts = {k: v for k, v in opts.items() if k not in ("func", "command")}
    return run_command("srprior sweep", run_sweep, opts)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="sweep.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return _run(vars(parser.parse_args(argv)))
