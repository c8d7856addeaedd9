"""`run_sweep`: the whole sweep of a SweepOptions — the plan, the store's answer (which trial keys are FINISHED:
reused; unfinished: resumed), the checks, then under the sweep's lease the servers, Ray, Tune and a report per
table (srprior.sweep.launch starts the machinery; srprior.sweep.view prints the plan)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from srprior import contracts, credentials, exposure, locks, preflight, tracking
from srprior.options import SweepOptions
from srprior.plan import SweepPlan, default_sweep_id, fuse_groups, make_plan, plan_readings
from srprior.schema import trial_config
from srprior.sweep import launch as machinery
from srprior.sweep.plancost import plan_document
from srprior.sweep.view import experiment, format_plan, print_seed_plan, resources
from srprior.trainers.health import is_diverged
from srprior.sweep import SweepError
from srprior.trainers.resources import Resources

STATE_FILE = "srprior-sweep.json"  # in <storage>/<sweep id>/: the stored options --resume rebuilds the sweep from


@dataclass
class Launch:
    """A checked sweep, ready to start: what run_sweep decided (under the sweep's lease) for `launch`."""

    plan: SweepPlan
    opts: SweepOptions  # with the sweep id as its name
    output: Path
    storage: str
    existing: dict[str, Any]  # trial key -> its newest MLflow run
    to_train: list
    diverged: list  # FAILED by divergence before: not trained again without --retrain
    groups: list[list]  # the Ray Train runs (fused groups of to_train)
    res: Resources | None  # None until Ray (a cluster's) says what it has
    device: str
    owns_ray: bool
    address: str | None  # a cluster to join; None: a local Ray
    local_cpus: int
    user_uri: str | None
    folders: tuple[Path, ...]  # watched for free space

    @property
    def sweep_id(self) -> str:
        return self.opts.name

    @property
    def needs_ray(self) -> bool:
        return self.plan.mode == "search" or bool(self.to_train)


@dataclass
class Outcome:
    """What a launched sweep ends with; the servers it started, for the cleanup."""

    uri: str | None
    server: Any = None
    parents: dict[str, str] = field(default_factory=dict)
    unfinished: int = 0
    n_run: int = 0
    failed: list[str] = field(default_factory=list)
    stopped: str | None = None


def _storage(value: str | None, output: Path) -> str:
    preflight.check_storage(value)
    if value and "://" in value:
        return value.rstrip("/")
    return str(Path(value).expanduser().resolve() if value else output / "ray")


def find_sweep(storage: str, name: str, opts: SweepOptions) -> SweepOptions:
    """The stored options of sweep `name` ('latest': newest sweep, of the same table/search when given)."""
    root = Path(storage)
    if name != "latest":
        state = root / name / STATE_FILE
        if not state.is_file():
            raise SweepError(f"--resume {name}: no sweep state {state}; sweeps here: "
                             f"{', '.join(p.parent.name for p in root.glob('*/' + STATE_FILE)) or 'none'}")
        return SweepOptions.from_json(state.read_text())
    states = sorted(root.glob("*/" + STATE_FILE), key=lambda p: p.stat().st_mtime, reverse=True)
    for state in states:
        stored = SweepOptions.from_json(state.read_text())
        if all(not getattr(opts, k) or getattr(stored, k) == getattr(opts, k) for k in ("table", "search")):
            return stored
    raise SweepError(f"--resume: no sweep to resume under {root}")


def _resumed(opts: SweepOptions) -> SweepOptions:
    """--resume: the stored sweep's options, this command line's runtime options."""
    output = tracking.output_dir(opts.output_dir)
    return find_sweep(_storage(opts.storage, output), opts.resume, opts).resumed_by(opts)


def _failed(uri: str, trials: list) -> list[str]:
    """One line per trial of this sweep whose run ended FAILED (diverged, bad data): the report shows them as
    failed, never as values."""
    runs = tracking.runs_by_key(uri, {t.key for t in trials})
    return [f"  {t.name} (run {runs[t.key].info.run_id[:12]}): {runs[t.key].data.tags.get(contracts.FAILURE, '?')}"
            for t in trials if t.key in runs and runs[t.key].info.status == "FAILED"]


def run_sweep(options: SweepOptions) -> int:
    """The whole sweep (see the module docstring); uses an already initialised Ray session when there is one."""
    opts = SweepOptions.require(options, "run_sweep")
    if opts.resume:
        preflight.check_name("--resume", opts.resume)
        opts = _resumed(opts)
    plan = make_plan(opts)
    for key, value in machinery.LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    opts = opts.replace(name=preflight.check_name("--name", opts.name or default_sweep_id(opts)))
    plan = replace(plan, options=opts)  # one instance: the plan's options are the sweep's (named) ones
    job = _check(plan, opts)
    if opts.plan:
        print(json.dumps(plan_document(plan, job.to_train)) if opts.json else
              format_plan(plan, job.existing, job.to_train, job.res, job.device, opts.retrain, job.groups))
        return 0
    store_uri = job.user_uri or tracking.default_tracking_uri(job.output)
    if opts.seeds_for_power is not None:
        return print_seed_plan(plan, opts, store_uri)
    if not job.output.exists():
        job.output.mkdir(mode=0o700, parents=True)  # the store, checkpoints and reports: the user's alone
    with locks.sweep_lease(job.output, job.sweep_id):
        if plan.mode == "table":
            from srprior.stopping import mark_orphaned_runs

            mark_orphaned_runs(store_uri, list(job.existing.values()), job.output, job.sweep_id)
            if not opts.retrain:  # reused runs gain the sets built after they finished (no retraining)
                _evaluate_later(store_uri, job.output, {t.key: job.existing[t.key] for t in plan.trials
                                                        if t.key in job.existing and t not in job.to_train})
        return launch(job)


def _check(plan: SweepPlan, opts: SweepOptions) -> Launch:
    """What to train, reuse and skip, on what resources — checked before anything starts."""
    import ray

    output = tracking.output_dir(opts.output_dir)
    storage, user_uri = _storage(opts.storage, output), tracking.user_tracking_uri()
    store_uri = user_uri or tracking.default_tracking_uri(output)
    existing = tracking.runs_by_key(store_uri, {t.key for t in plan.trials}) if plan.mode == "table" else {}
    diverged = [] if opts.retrain else [t for t in plan.trials if t.key in existing and existing[t.key].info.status
                                        == "FAILED" and is_diverged(existing[t.key].data.tags.get(contracts.FAILURE))]
    to_train = [t for t in plan.trials if t not in diverged and
                (opts.retrain or t.key not in existing or existing[t.key].info.status != "FINISHED")]
    owns_ray = not ray.is_initialized()
    address = machinery.cluster_address(opts) if owns_ray else None
    local_cpus = int(opts.num_cpus or os.cpu_count() or 1)
    gpus = machinery.local_gpus() if address is None else 1
    device = "gpu" if gpus else "cpu"
    if opts.workers > 1 and (opts.fuse or 1) > 1:
        raise SweepError("--fuse K > 1 trains K trials in one worker: it cannot be combined with --workers > 1")
    groups = fuse_groups(to_train, 1 if opts.workers > 1 else opts.fuse, device)
    res = resources(plan, to_train, opts, local_cpus, gpus, len(groups)) if owns_ray and address is None else None
    folders = (output,) if "://" in storage else (output, Path(storage))
    if opts.seeds_for_power is None:  # --plan runs the sweep's checks: it claims to validate everything
        preflight.check_free_space(folders)
        preflight.check_data([t.trial.config for t in to_train] if plan.mode == "table" else
                             [trial_config("search", **plan.science)])
    return Launch(plan, opts, output, storage, existing, to_train, diverged, groups, res, device, owns_ray,
                  address, local_cpus, user_uri, folders)


def launch(job: Launch) -> int:
    """Servers, Ray, Tune and the reports of a checked sweep (run_sweep holds its lease)."""
    import ray

    from srprior.stopping import SignalStop

    state = Path(job.storage) / job.sweep_id / STATE_FILE
    if not job.opts.resume and state.exists():
        raise SweepError(f"sweep {job.sweep_id!r} exists under {job.storage}; use --resume {job.sweep_id} or "
                         "another --name")
    out, resume_cmd = Outcome(job.user_uri), _resume_cmd(job)
    backend, log = tracking.default_tracking_uri(job.output), job.output / "mlflow-server.log"
    if out.uri is None and job.address is None:  # the platform's store, behind a server: trials never lock it
        out.server = tracking.TrackingServer(backend, tracking.artifacts_dir(job.output), log=log).launch()
    auth = credentials.for_sweep(job.output, out.uri is None and job.address is not None, out.uri)
    signals = SignalStop().__enter__()
    try:
        job = _start_ray(job, signals)
        if not job.opts.resume and "://" not in job.storage:  # what --resume needs, once the sweep can start
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(job.opts.to_json())
        if out.uri is None and out.server is None:  # joined a cluster: the server binds the head's node address
            host = exposure.server_host(ray.util.get_node_ip_address())
            out.server = tracking.TrackingServer(backend, tracking.artifacts_dir(job.output), host=host, log=log,
                                                 auth=auth).launch()
        if out.server is not None:
            out.server.wait()
            out.uri = out.server.url
        _train(job, out, signals, log)
        if out.stopped is None:
            _finish(job, out, resume_cmd)
    except KeyboardInterrupt:
        if signals.reason is None:
            raise
        out.stopped = signals.reason
    finally:
        signals.__exit__()
        if job.owns_ray and ray.is_initialized():
            ray.shutdown()
        if not (out.stopped or "").startswith("disk full"):  # nothing can be written: the next sweep marks them
            _mark_owned(out.uri, out.server, job.sweep_id, out.stopped or "the sweep ended before the run finished")
        if out.server is not None:
            out.server.stop()
    return _exit_code(job, out, signals.reason, resume_cmd)


def _resume_cmd(job: Launch) -> str:
    return tracking.command("sweep", "--resume", job.sweep_id, "--output-dir", str(job.output),
                            *(("--storage", job.opts.storage) if job.opts.storage else ()))


def _gcs_died(job: Launch, out: Outcome, progress: Any, reason: str) -> None:
    """Ray's GCS is gone: Tune cannot stop its trials, and Ray would end this process in about a minute without a
    word. Say so with the resume command, mark the runs this sweep owns KILLED (its tracking server still runs) and
    exit (srprior.watchdog)."""
    if progress is not None:
        progress.close()
    print(f"srprior sweep: error: {reason}; the sweep stopped, resume with: {_resume_cmd(job)}", file=sys.stderr,
          flush=True)
    _mark_owned(out.uri, out.server, job.sweep_id, reason)
    os._exit(1)


def _start_ray(job: Launch, signals: Any) -> Launch:
    """Ray for a sweep that trains: a local one, or the cluster's (whose resources size the trials)."""
    import ray

    verbose = job.opts.verbose
    if job.needs_ray and job.owns_ray and job.address is None:
        machinery.start_local_ray(job.local_cpus, verbose)
    elif job.needs_ray and job.owns_ray:
        from srprior.progress import quiet_ray

        ray.init(address=job.address, runtime_env=credentials.runtime_env(job.storage, job.output),
                 **({} if verbose else quiet_ray()))
    signals.install()  # over Ray's native handler (a stack dump instead of the summary)
    if job.needs_ray and (not job.owns_ray or job.address is not None):
        total = ray.cluster_resources()
        res = resources(job.plan, job.to_train, job.opts, total.get("CPU", 0), total.get("GPU", 0), len(job.groups))
        if res.cpus_per_worker >= 1:  # whole CPUs leave room for other sweeps' drivers (else each waits for
            res = replace(res, cpus_per_worker=float(int(res.cpus_per_worker)))  # 3.9 of 4 CPUs: deadlock)
        exposure.check_cluster_storage(job.storage, sum(n["Alive"] for n in ray.nodes()), job.opts.shared_storage)
        job = replace(job, res=res)
    return job


def _train(job: Launch, out: Outcome, signals: Any, log: Path) -> None:
    """The parent runs, the plan printed, then Tune over the Ray Train runs (under the watchdog)."""
    import functools

    import ray

    from srprior.watchdog import Watchdog

    plan, res, verbose = job.plan, job.res, job.opts.verbose
    out.parents = machinery.parent_runs(plan, job.sweep_id, out.uri, job.opts)
    print(format_plan(plan, job.existing, job.to_train, res, job.device, job.opts.retrain, job.groups, detail=False),
          flush=True)
    if job.diverged:
        print(f"  not trained again (diverged before; --retrain to try): {', '.join(t.name for t in job.diverged)}")
    if not job.needs_ray:
        return
    context = plan.context.replace(
        tracking_uri=out.uri, experiment=experiment(plan), sweep_id=job.sweep_id, retrain=job.opts.retrain,
        parent_run_id=out.parents[plan.names[0]], num_workers=res.workers, cpus_per_worker=res.cpus_per_worker,
        gpus_per_worker=res.gpus_per_worker, use_gpu=res.gpus_per_worker > 0)
    out.n_run = plan.n_trials if plan.mode == "search" else len(job.groups)
    callbacks, progress = [], None
    if not verbose:
        from srprior.progress import SweepProgress

        runs = ([(len(g), g[0].trial.config.schedule.steps) for g in job.groups] if plan.mode == "table" else
                [(1, int(plan.science.get("steps", 0)))] * plan.n_trials)
        progress = SweepProgress(runs, len(plan.trials) - len(job.to_train))
        callbacks.append(progress)
    try:
        server = out.server
        died = functools.partial(_gcs_died, job, out, progress)
        with Watchdog(out.uri if tracking.is_remote(out.uri) else None, server and server.proc, log,
                      job.folders + machinery.ray_temp(job.owns_ray and job.address is None),
                      ray.get_runtime_context().gcs_address, died) as watch:
            signals.tuning = True
            try:
                results = machinery.tuner(plan, job.opts, job.storage, job.groups, context, out.parents,
                                          job.existing, res.max_concurrent, callbacks, watch.stopper()).fit()
            except Exception:  # noqa: BLE001 - e.g. Tune cannot save its state on the full disk it stops for
                if watch.reason is None:
                    raise
                results = None
    finally:
        signals.tuning = False
        if progress is not None:
            progress.close()
    out.stopped = watch.reason or signals.reason
    out.unfinished = out.n_run - (results.num_terminated if results else 0)  # errored, or stopped by Ctrl-C


def _finish(job: Launch, out: Outcome, resume_cmd: str) -> None:
    """The reports (printed, written, logged to the parent runs) and the parent runs' end state."""
    plan = job.plan
    out.failed = _failed(out.uri, job.to_train + job.diverged) if plan.mode == "table" else []
    store = out.uri if out.server is None else out.server.backend_uri
    print(reports(plan, job.sweep_id, out.uri, store, job.output, out.parents,
                  resume_cmd if out.unfinished or out.failed else None))
    client = tracking.client(out.uri)
    for run_id in out.parents.values():
        client.set_terminated(run_id, "FAILED" if out.unfinished or out.failed else "FINISHED")


def _exit_code(job: Launch, out: Outcome, signal_reason: str | None, resume_cmd: str) -> int:
    """The last lines a sweep prints and its exit code: 0 only when every run finished and none failed."""
    if out.stopped is not None and out.stopped == signal_reason:
        counts = f" before {out.unfinished} of {out.n_run} Ray Train run(s) finished" if out.unfinished else ""
        print(f"INCOMPLETE: {out.stopped}{counts}; resume with: {resume_cmd}", flush=True)
        return 1
    if out.stopped is not None:
        print(f"srprior sweep: error: {out.stopped}; the sweep stopped, resume with: {resume_cmd}", file=sys.stderr)
        return 1
    if out.failed:
        print(f"{len(out.failed)} trial(s) FAILED (in the report as failed, not as values):\n" + "\n".join(out.failed),
              file=sys.stderr)
    if out.unfinished:
        print(f"INCOMPLETE: {out.unfinished} of {out.n_run} Ray Train run(s) did not finish; resume with: "
              f"{resume_cmd}")
    print(f"Open the MLflow UI: {tracking.ui_command(job.output)}")
    return 1 if out.unfinished or out.failed else 0


def reports(plan: SweepPlan, sweep_id: str, uri: str, store: str, output: Path, parents: dict[str, str],
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
                                      plan_readings(plan, name), budget=plan.budget)
        except ReportError as exc:
            texts.append(f"no report for {plan.mode} {name}: {exc}")
            continue
        paths = write_report(replace(report, tracking_uri=store), output / "reports" / sweep_id,
                             tracking_uri=uri)
        if plan.mode == "table" and name in parents:  # the link `srprior ui` prints opens this view
            client = tracking.client(uri)
            tracking.save_runs_view(client, client.get_run(parents[name]).info.experiment_id,
                                    runs_view_metrics(report))
        texts.append(to_terminal(report, paths, resume))  # the report carries the budget's caption
    return "\n".join(texts)


def _evaluate_later(uri: str, output: Path, reused: dict[str, Any]) -> None:
    from srprior.trainers.backfill import backfill

    for line in backfill(uri, output, reused):
        print(f"evaluated later: {line}", flush=True)


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


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False
