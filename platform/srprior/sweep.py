"""`srprior sweep` / `python sweep.py`: a thesis table (or an Optuna search) as Ray Tune trials of Ray Train runs.

Order of work: every argument and every trial config is validated before Ray starts (bad input costs no
cluster); then the MLflow server (local store) and Ray start side by side; the sweep's parent run is created;
Tune runs one trial per (row, seed) — or Optuna's TPE suggestions × seeds (Repeater) — with at most
`max_concurrent` at once; the report is printed and logged to the parent run; the UI command is printed last.

Resources: srprior.trainers.resources (fractional CPUs/GPUs per trial, concurrency).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srprior import tracking
from srprior.trainers.resources import DRIVER_CPU, Resources, SweepError, plan_resources

STATE_FILE = "srprior-sweep.json"  # in the Tune experiment folder: what --resume needs
# Local runs: no MLflow run URL per trial on stdout; Train's controller notices a finished worker within 0.5 s
# instead of 2 s (seconds per trial when trials last tens of seconds).
LOCAL_ENV = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
RUNTIME_OPTIONS = ("resume", "max_concurrent", "address", "num_cpus", "max_failures", "output_dir")


def _parse_sets(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE pairs for the science fields of TrialConfig, typed like their defaults."""
    from dataclasses import fields

    from srprior.trainers.config import NON_PARAMS, TrialConfig

    defaults = {f.name: f.default for f in fields(TrialConfig)
                if f.name not in NON_PARAMS and isinstance(f.default, (bool, int, float, str))}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(defaults))}")
        default = defaults[key]
        try:
            if key == "w" and value != "sim" or isinstance(default, float) and not isinstance(default, bool):
                out[key] = float(value)
            elif isinstance(default, bool):
                out[key] = {"true": True, "1": True, "false": False, "0": False}[value.lower()]
            elif isinstance(default, int):
                out[key] = int(value)
            else:
                out[key] = value
        except (KeyError, ValueError):
            raise SweepError(f"--set {item!r}: {key} must be a {type(default).__name__}") from None
    return out


@dataclass
class Plan:
    """A validated sweep: what runs where, and with which sweep-wide trial fields."""

    mode: str  # "table" | "search"
    name: str  # table or search name
    sweep_id: str
    output: Path
    storage: str
    experiment: str
    budget: str
    trials: list[dict[str, Any]]  # table mode: the trial configs; search mode: [] (Optuna samples them)
    base: dict[str, Any]  # sweep-wide TrialConfig fields
    samples: int
    seeds: int
    options: dict[str, Any]  # the parsed CLI options (stored for --resume)

    @property
    def path(self) -> str:
        return f"{self.storage}/{self.sweep_id}"


def _storage(value: str | None, output: Path) -> str:
    if value and "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve() if value else output / "ray")


def make_plan(opts: dict[str, Any]) -> Plan:
    """Validate the options and build every trial config (raises SweepError/ValueError before Ray)."""
    from srprior.search_spaces import get_table
    from srprior.search_spaces.search import get_search
    from srprior.trainers.budgets import get_budget
    from srprior.trainers.config import TrialConfig

    if bool(opts.get("table")) == bool(opts.get("search")):
        raise SweepError("give exactly one of --table NAME or --search NAME")
    try:
        budget = get_budget(opts["budget"])
        spec = get_table(opts["table"]) if opts.get("table") else get_search(opts["search"])
    except KeyError as exc:
        raise SweepError(exc.args[0]) from None
    output = tracking.output_dir(opts.get("output_dir"))
    data_root = opts.get("data_root")
    if data_root is None and budget.name != "smoke":  # smoke stays on the embedded images unless told
        data_root = os.environ.get("SRPRIOR_DATA") or None
    for flag, folder in (("--data-root", data_root), ("--train-root", opts.get("train_root"))):
        if folder and not Path(folder).is_dir():
            raise SweepError(f"{flag} {folder}: no such folder")
    base = {**budget.trial_fields(), "data_root": str(Path(data_root).resolve()) if data_root else None,
            "train_root": str(Path(opts["train_root"]).resolve()) if opts.get("train_root") else None,
            "di": not opts.get("no_di"),
            "fault_kill_at_step": opts.get("fault_kill_at_step") or 0, "experiment": spec.experiment}
    for key in ("steps", "max_eval_images", "figures"):
        if opts.get(key) is not None:
            base[key] = opts[key]
    if opts.get("benchmarks"):
        base["benchmarks"] = tuple(opts["benchmarks"].split(","))
    sets = _parse_sets(opts.get("set") or [])
    seeds = opts.get("seeds") or budget.seeds
    kind = "table" if opts.get("table") else "search"
    sweep_id = opts.get("name") or f"{kind}-{spec.name}-{budget.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not sweep_id or any(c in sweep_id for c in "'/ "):
        raise SweepError(f"--name {sweep_id!r}: must be non-empty, without quotes, slashes or spaces")
    if kind == "table":
        try:
            rows = opts["rows"].split(",") if opts.get("rows") else None
            trials = [{**t, "preset": budget.preset(t["preset"]), **sets}
                      for t in spec.trial_configs(seeds=seeds, rows=rows)]
        except KeyError as exc:
            raise SweepError(exc.args[0]) from None
        for t in trials:  # every trial validated here, not inside a Ray actor
            TrialConfig.from_dict({**base, **t})
        samples, n_seeds = len(trials), seeds or 0
    else:
        base.update(sets, table=spec.name, scale=spec.scale)
        trials, n_seeds = [], seeds or spec.seeds
        samples = (opts.get("samples") or spec.n_configs) * n_seeds
        TrialConfig.from_dict({**base, "preset": budget.preset(spec.preset)})
    return Plan(kind, spec.name, sweep_id, output, _storage(opts.get("storage"), output), spec.experiment,
                budget.name, trials, base, samples, n_seeds, {**opts, "name": sweep_id})


def _search_space(trial: Any, search: Any, budget: str) -> dict[str, Any]:
    """Optuna define-by-run: the search's space, with the budget's preset (micro under smoke)."""
    from srprior.search_spaces.search import define_space
    from srprior.trainers.budgets import get_budget

    constants = define_space(trial, search)
    constants["preset"] = get_budget(budget).preset(constants["preset"])
    return constants


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


def _models(plan: Plan) -> set[tuple[str, int]]:
    """(preset, scale) of every trial: the largest sets the default GPU share."""
    from srprior.search_spaces.search import get_search
    from srprior.trainers.budgets import get_budget

    if plan.mode == "search":
        return {(get_budget(plan.budget).preset(get_search(plan.name).preset), plan.base["scale"])}
    return {(t["preset"], t.get("scale", 2)) for t in plan.trials}


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Tune's default embeds the whole config in the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def _tuner(plan: Plan, res: Resources, restore: bool, max_failures: int):
    import ray.tune
    from ray.tune.search import Repeater

    from srprior.trainers.driver import train_driver

    base = {**plan.base, "num_workers": res.workers, "cpus_per_worker": res.cpus_per_worker,
            "gpus_per_worker": res.gpus_per_worker, "use_gpu": res.gpus_per_worker > 0,
            "sweep_id": plan.sweep_id}
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(train_driver, base=base, storage_path=f"{plan.path}/train",
                                 max_failures=max_failures), {"CPU": DRIVER_CPU})
    if restore and ray.tune.Tuner.can_restore(plan.path):  # else it died before Tune saved anything: start anew
        return ray.tune.Tuner.restore(plan.path, trainable, resume_errored=True)
    scheduler, search_alg, space = None, None, {"trial": ray.tune.grid_search(plan.trials)}
    if plan.mode == "search":
        import optuna
        from functools import partial

        from ray.tune.search.optuna import OptunaSearch

        from srprior.search_spaces.search import get_search

        spec = get_search(plan.name)
        searcher = OptunaSearch(space=partial(_search_space, search=spec, budget=plan.budget),
                                metric=spec.metric, mode=spec.mode, sampler=optuna.samplers.TPESampler(seed=0))
        search_alg, space = Repeater(searcher, repeat=plan.seeds, set_index=True), None
        if plan.options.get("asha"):  # Repeater's docs advise against early stopping; opt-in only
            scheduler = ray.tune.schedulers.ASHAScheduler(time_attr="training_iteration", grace_period=1)
    return ray.tune.Tuner(
        trainable, param_space=space,
        tune_config=ray.tune.TuneConfig(metric="val/psnr", mode="max", num_samples=1 if space else plan.samples,
                                        search_alg=search_alg, scheduler=scheduler,
                                        max_concurrent_trials=res.max_concurrent,
                                        trial_dirname_creator=trial_dirname),
        run_config=ray.tune.RunConfig(name=plan.sweep_id, storage_path=plan.storage, verbose=1,
                                      failure_config=ray.tune.FailureConfig(max_failures=1)))


def _parent_run(plan: Plan, uri: str) -> str:
    from mlflow.entities import Param

    client = tracking.client(uri)
    exp = tracking.experiment_id(client, plan.experiment)
    key = {"srprior.role": "sweep", "srprior.sweep_id": plan.sweep_id}
    run_id = tracking.get_or_create_run(client, exp, key, plan.sweep_id,
                                        {"table" if plan.mode == "table" else "search": plan.name,
                                         "budget": plan.budget})
    params = {k: str(v) for k, v in plan.options.items() if v is not None and k not in RUNTIME_OPTIONS}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    return run_id


def _table_report(plan: Plan, uri: str) -> str:
    """srprior.report's table of this sweep's runs; its MD/CSV/HTML files go to the parent run."""
    from srprior.report import ReportError, build_report, to_markdown, write_report
    from srprior.search_spaces import get_table

    try:
        report = build_report(get_table(plan.name), uri, sweep=plan.sweep_id)
    except ReportError as exc:
        return f"no report: {exc}"
    paths = write_report(report, plan.output / "reports" / plan.sweep_id)
    return to_markdown(report) + f"\nReport files: {', '.join(str(p) for p in paths.values())}\n"


def _search_report(plan: Plan, uri: str, parent: str) -> str:
    """Mean final val/psnr (the objective) per sampled configuration, best first; logged to the parent run."""
    client = tracking.client(uri)
    runs = tracking.find_runs(client, tracking.experiment_id(client, plan.experiment),
                              {"srprior.role": "trial", "srprior.sweep_id": plan.sweep_id})
    by_row: dict[str, list] = {}
    for run in runs:
        by_row.setdefault(run.data.tags["row"], []).append(run)
    lines = ["| config | λ_AP | w | N_SSR | scenario | seeds | mean val/psnr |", "|---|---|---|---|---|---|---|"]
    rows = []
    for row, group in by_row.items():
        values = [r.data.metrics["val/psnr"] for r in group if "val/psnr" in r.data.metrics]
        p = group[0].data.params
        mean = sum(values) / len(values) if values else math.nan
        rows.append((mean, f"| {row} | {p.get('lambda_ap')} | {p.get('w')} | {p.get('n_ssr')} | "
                           f"{p.get('scenario')} | {len(values)} | {mean:.3f} |"))
    lines += [line for _, line in sorted(rows, key=lambda r: -r[0] if math.isfinite(r[0]) else math.inf)]
    text = "\n".join(lines) + "\n"
    out = plan.output / "reports" / plan.sweep_id / f"search-{plan.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    client.log_artifact(parent, str(out), artifact_path="report")
    return text


def start_local_ray(num_cpus: int) -> None:
    """A local Ray with the dashboard on (Train V2's cleanup needs the State API) and LOCAL_ENV inherited."""
    import ray

    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=num_cpus, include_dashboard=True)


def run_sweep(opts: dict[str, Any]) -> int:
    """The whole sweep (see the module docstring); uses an already initialised Ray session when there is one."""
    import ray

    resume = bool(opts.get("resume"))
    if resume:
        opts = _resume_options(opts)
    plan = make_plan(opts)
    owns_ray = not ray.is_initialized()
    address = _cluster_address(opts) if owns_ray else None
    workers, gpus_per_trial, cap = opts.get("workers") or 1, opts.get("gpus_per_trial"), opts.get("max_concurrent")
    local_cpus = int(opts.get("num_cpus") or os.cpu_count() or 1)
    if owns_ray and address is None:  # checked before anything starts
        res = plan_resources(plan.samples, _models(plan), local_cpus, _local_gpus(), workers, gpus_per_trial, cap)
    state = Path(plan.path) / STATE_FILE
    if not resume and "://" not in plan.storage:
        if state.exists():
            raise SweepError(f"sweep {plan.sweep_id!r} exists under {plan.storage}; use --resume {plan.sweep_id} "
                             "or another --name")
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(plan.options, indent=1, default=str))

    uri, server, unfinished = tracking.user_tracking_uri(), None, 0
    if uri is None:  # the platform's store, behind a server so concurrent trials never lock SQLite
        server = tracking.TrackingServer(tracking.default_tracking_uri(plan.output),
                                         tracking.artifacts_dir(plan.output),
                                         host="127.0.0.1" if address is None else "0.0.0.0",
                                         log=plan.output / "mlflow-server.log").launch()
    try:
        if owns_ray and address is None:
            start_local_ray(local_cpus)
        elif owns_ray:
            ray.init(address=address)
        if not owns_ray or address is not None:
            total = ray.cluster_resources()
            res = plan_resources(plan.samples, _models(plan), total.get("CPU", 0), total.get("GPU", 0), workers,
                                 gpus_per_trial, cap)
        if server is not None:
            server.wait()
            uri = server.url if address is None else f"http://{ray.util.get_node_ip_address()}:{server.port}"
        plan.base["tracking_uri"] = uri
        plan.base["parent_run_id"] = parent = _parent_run(plan, uri)
        print(f"sweep {plan.sweep_id}: {plan.samples} trials ({plan.mode} {plan.name}, budget {plan.budget}), "
              f"{res.max_concurrent} at a time, {res.workers} worker(s)/trial × {res.cpus_per_worker} CPU"
              f"{f' + {res.gpus_per_worker} GPU' if res.gpus_per_worker else ''}; MLflow {uri}", flush=True)
        max_failures = 3 if opts.get("max_failures") is None else opts["max_failures"]
        results = _tuner(plan, res, resume, max_failures).fit()
        unfinished = plan.samples - results.num_terminated  # errored, or stopped by Ctrl-C
        print(_table_report(plan, uri) if plan.mode == "table" else _search_report(plan, uri, parent))
        tracking.client(uri).set_terminated(parent, "FAILED" if unfinished else "FINISHED")
    finally:
        if owns_ray:
            ray.shutdown()
        if server is not None:
            server.stop()
    if unfinished:
        print(f"{unfinished} of {plan.samples} trial(s) did not finish; resume with: srprior sweep --resume "
              f"{plan.sweep_id} --output-dir {plan.output}", file=sys.stderr)
    print(f"Open the MLflow UI: {tracking.ui_command(plan.output)}")
    return 1 if unfinished else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group()
    what.add_argument("--table", help="thesis table to reproduce, e.g. 4.2 (srprior.search_spaces.TABLES)")
    what.add_argument("--search", help="Optuna search to run (srprior.search_spaces.search.SEARCHES)")
    p.add_argument("--budget", default="smoke", help="smoke (CPU, minutes), short (GPU, ~10 min/trial), thesis")
    p.add_argument("--seeds", type=int, help="seeds per row / per sampled config (default: the budget's)")
    p.add_argument("--rows", help="comma-separated row ids to run (default: all)")
    p.add_argument("--samples", type=int, help="search: configurations to sample (default: the search's)")
    p.add_argument("--asha", action="store_true", help="search: ASHA early stopping (not advised with seeds)")
    p.add_argument("--steps", type=int, help="training steps per trial (default: the budget's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a trial-config field")
    p.add_argument("--data-root", help="benchmarks in the EDSR layout (default $SRPRIOR_DATA; smoke: embedded)")
    p.add_argument("--train-root", help="DIV2K root or HR image folder (default: the embedded images)")
    p.add_argument("--benchmarks", help="comma-separated subset of set5,set14,bsd100,urban100,hardcases")
    p.add_argument("--max-eval-images", type=int, help="first N images per evaluation set (0: all)")
    p.add_argument("--no-di", action="store_true", help="skip the LAM diffusion index")
    p.add_argument("--figures", action=argparse.BooleanOptionalAction,
                   help="SSM/LAM/SR-sample PNGs per trial (default: the budget's; smoke: off)")
    p.add_argument("--output-dir", default=tracking.DEFAULT_OUTPUT, help="MLflow store, Ray results, reports")
    p.add_argument("--storage", help="Ray storage (default <output-dir>/ray; NFS path or s3:// on clusters)")
    p.add_argument("--name", help="sweep id (default <table|search>-<name>-<budget>-<time>)")
    p.add_argument("--resume", nargs="?", const="latest", help="resume sweep NAME (default: the latest)")
    p.add_argument("--workers", type=int, help="Ray Train workers (DDP ranks) per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=float, help="GPU share per trial (default: from the model size)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: what the resources fit)")
    p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    p.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS or a running `ray start`; "
                                     "'local': always start a private Ray)")
    p.add_argument("--max-failures", type=int, help="worker restarts per trial from its checkpoint (default 3)")
    p.add_argument("--fault-kill-at-step", type=int, help=argparse.SUPPRESS)  # tests: kill a worker once


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a thesis table or an Optuna search on Ray, tracked in MLflow")
    add_arguments(p)
    p.set_defaults(func=lambda args: _run(vars(args)))


def _run(opts: dict[str, Any]) -> int:
    opts = {k: v for k, v in opts.items() if k not in ("func", "command")}
    try:
        return run_sweep(opts)
    except (SweepError, ValueError) as exc:
        print(f"srprior sweep: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return _run(vars(parser.parse_args(argv)))
