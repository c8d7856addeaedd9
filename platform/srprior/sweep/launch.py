"""Starting a checked sweep's machinery: a local Ray (or the cluster's), one parent run per table, and the Tune
experiment of Ray Train runs (a grid over the planned trials, or Optuna's suggestions × seeds)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from srprior import contracts, exposure, tracking
from srprior.options import SweepOptions
from srprior.plan import SweepPlan, plan_readings
from srprior.sweep.view import experiment
from srprior.trainers.resources import DRIVER_CPU

# Local runs: no MLflow run URL per trial on stdout; Train's controller notices a finished worker within 0.5 s
# instead of 2 s (seconds per trial when trials last tens of seconds).
LOCAL_ENV = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def cluster_address(opts: SweepOptions) -> str | None:
    """--address, $RAY_ADDRESS or a cluster started by `ray start`/`ray up` on this node; None (also for
    --address local): start Ray here."""
    if opts.address:
        return None if opts.address == "local" else opts.address
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)


def local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


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


def ray_temp(local: bool) -> tuple[Path, ...]:
    """The temp folder of the local Ray this sweep started (logs, spilled objects): watched for a full disk."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None) if local else None
    return (Path(node.get_temp_dir_path()),) if node is not None else ()


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Tune's default embeds the whole config in the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def tuner(plan: SweepPlan, opts: SweepOptions, storage: str, groups: list[list], context: Any,
          parents: dict[str, str], existing: dict[str, Any], max_concurrent: int, callbacks: list,
          stopper: Any = None):
    """The Tune experiment of sweep `opts.name`: a grid over the fused groups (tables) or Optuna's TPE (searches);
    `opts` says whether it resumes, how often a trial restarts and how much Tune prints."""
    import ray.tune

    from srprior.trainers.driver import train_driver

    sweep_id, restore, max_failures, verbose = opts.name, bool(opts.resume), opts.max_failures, opts.verbose

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
                    "experiment": experiment(plan, table), "parent_run_id": parents[table],
                    "resume_run_id": run.info.run_id if run is not None and not context.retrain else None}

        configs = [{"members": [entry(t) for t in group]} for group in groups]
        space, samples = {"trial": ray.tune.grid_search(configs)}, 1
    else:
        search_alg, space, samples = search_algorithm(plan), None, plan.search_samples
        if plan.options.asha:  # Repeater's docs advise against early stopping; opt-in only
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


def search_algorithm(plan: SweepPlan):
    """What a search sweep gives Tune: Optuna's TPE over the search's own space (SearchSpec.space: its ranges;
    preset and scale come from the plan's base science, with the budget's preset swap), each suggestion repeated
    over the plan's seeds."""
    import optuna
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    from srprior.search_spaces.search import get_search

    spec = get_search(plan.names[0])
    searcher = OptunaSearch(space=spec.space, metric=spec.metric, mode=spec.mode,
                            sampler=optuna.samplers.TPESampler(seed=0))
    return Repeater(searcher, repeat=plan.search_seeds, set_index=True)


def parent_runs(plan: SweepPlan, sweep_id: str, uri: str, opts: SweepOptions) -> dict[str, str]:
    """One parent run per table (or the search) of this sweep, tagged with the options that rebuild its plan."""
    from mlflow.entities import Param, RunTag

    client = tracking.client(uri)
    stored = opts.stored()
    parents = {}
    for name in plan.names:
        exp = tracking.experiment_id(client, experiment(plan, name), description=_description(plan, name))
        key = {contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep_id}
        run_id = tracking.get_or_create_run(client, exp, key, sweep_id, {plan.mode: name, "budget": plan.budget})
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in stored.items()],
                         tags=[RunTag(contracts.OPTIONS_TAG, opts.to_json())])
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
