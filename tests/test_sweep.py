"""`srprior sweep` on a real local Ray cluster (2 CPUs) with a real MLflow server over SQLite in tmp dirs.

One Ray session serves the in-process sweeps of this module (run_sweep reuses it); the driver-kill case runs
the sweep in a subprocess with its own Ray so that it can be killed. Micro models, 20 steps, 48×48 eval crops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from mlflow.tracking import MlflowClient  # noqa: E402

from srprior import contracts, tracking  # noqa: E402
from srprior.commands import sweep as sweep_command  # noqa: E402
from srprior.sweep import launch  # noqa: E402
from srprior.sweep.run import run_sweep  # noqa: E402
from srprior.plan import PlanError, make_plan  # noqa: E402
from srprior.schema_fields import ConfigError  # noqa: E402
from srprior.options import SweepOptions

ROWS = ("edsr-t-micro/baseline", "edsr-t-micro/lambda-1e-4")
REPO = Path(__file__).resolve().parents[1]


def _opts(tmp: Path, **extra) -> dict:
    base = {"table": "smoke", "budget": "smoke", "seeds": 2, "steps": 20, "output_dir": str(tmp), "address": None}
    return {**base, **extra}


def _trial_runs(uri: str, experiment: str = "srprior/table-smoke", **tags) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return tracking.find_runs(client, exp.experiment_id, {"srprior.role": "trial", **tags}) if exp else []


def test_set_overrides_are_typed_by_the_schema_and_identity_is_refused():
    plan = make_plan(SweepOptions.of({"table": "smoke", "set": ["lambda_ap=1e-4", "n_ssr=3", "w=0.5", "scenario=2", "di=false"]}))
    config = plan.trials[0].trial.config
    assert (config.prior.lambda_ap, config.prior.extractor.n_ssr, config.prior.w, config.prior.extractor.scenario,
            config.data.di) == (1e-4, 3, 0.5, "global", False)
    with pytest.raises(ConfigError, match="ExtractorConfig.n_ssr='two': must be an integer >= 1"):
        make_plan(SweepOptions.of({"table": "smoke", "set": ["n_ssr=two"]}))
    for key in ("tracking_uri", "seed", "row", "table"):
        with pytest.raises(PlanError, match="expected KEY=VALUE with KEY one of"):
            make_plan(SweepOptions.of({"table": "smoke", "set": [f"{key}=1"]}))


def test_plan_all_tables_deduplicates_without_ray(tmp_path, capsys):
    """Acceptance: every thesis table under the thesis budget, in seconds, without Ray: 246 table cells are
    170 distinct (science config, seed) trials; the shared ones are named."""
    assert not ray.is_initialized()
    assert sweep_command._run(SweepOptions.of({"table": "all", "budget": "thesis", "plan": True, "output_dir": str(tmp_path),
                       "address": "local"})) == 0
    out = capsys.readouterr().out
    assert "table cells (row × seed): 246; distinct trials (science config, seed): 170" in out
    assert "to train: 170 · reused (FINISHED in MLflow): 0" in out
    assert "4.2:edsr-t/baseline = 4.3:edsr-t/baseline = 4.4:edsr-t/baseline = 4.5:edsr-t/baseline = " \
           "4.6:edsr-t/baseline = 4.7:edsr-t/baseline · seeds 0,1,2,3" in out
    assert "estimated cost (cpu, here)" in out and "estimated cost (gpu, one H100" in out
    assert "fused:" not in out and "+ 56.7 min start-up" in out  # tiny models do not fuse on a CPU: 170 × 20 s
    assert "    fixed: 170 trials, 166.0 H100-hours" in out  # issue 24: the sequential design beside it (all in)
    assert "expected under the thesis's effects: 127.1 trials, 112.3 H100-hours (68% of fixed)" in out
    assert not ray.is_initialized() and list(tmp_path.iterdir()) == []  # nothing started, nothing written


def _artifacts(out: Path, run_id: str, folder: str) -> set[str]:
    """Names of a run's artifacts in `folder`, read where the sweep's server stored them (mlflow-artifacts:/)."""
    return {p.name for p in (out / "mlartifacts").glob(f"*/{run_id}/artifacts/{folder}/*")}


@pytest.mark.parametrize("extra, message", [
    ({"table": "9.9"}, "unknown table '9.9'"),
    ({"set": ["lambda_ap=-1"]}, "PriorConfig.lambda_ap=-1.0: must be a finite number >= 0"),
    ({"set": ["n_ssr=0"]}, "ExtractorConfig.n_ssr=0: must be an integer >= 1"),
    ({"gpus_per_trial": 0.25}, "--gpus-per-trial 0.25: this machine/cluster has no GPU"),
])
def test_invalid_arguments_fail_before_ray(tmp_path, capsys, extra, message):
    if launch.local_gpus():
        pytest.skip("the fractional-GPU case needs a CPU-only box")
    assert not ray.is_initialized()
    assert sweep_command._run(SweepOptions.of(_opts(tmp_path, **extra))) == 2
    assert message in capsys.readouterr().err
    assert not ray.is_initialized()
    assert list(tmp_path.iterdir()) == []  # nothing written: no sweep state, no store


@pytest.fixture(scope="module")
def local_ray():
    launch.start_local_ray(2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def smoke_sweep(local_ray, tmp_path_factory, data_root):
    """The acceptance sweep: table `smoke`, 2 rows × 2 seeds, Set5 (first image) + LAM images from data_root;
    micro models on a CPU fuse by default: 2 Ray Train runs of 2 members each."""
    out = tmp_path_factory.mktemp("smoke")
    opts = _opts(out, name="acceptance", data_root=str(data_root), benchmarks="set5")
    assert run_sweep(SweepOptions.of(opts)) == 0
    return out


@pytest.mark.slow
def test_smoke_table_runs_report_and_curves(smoke_sweep, capsys):
    uri = tracking.default_tracking_uri(smoke_sweep)
    runs = _trial_runs(uri, **{"srprior.sweep_id": "acceptance"})
    assert sorted((r.data.tags["row"], r.data.tags["seed"]) for r in runs) == \
        sorted((row, seed) for row in ROWS for seed in ("0", "1"))
    # fused (2 members per run) yet exactly the runs --fuse 1 would log: one per planned key
    plan_keys = {t.key for t in make_plan(SweepOptions.of({"table": "smoke", "seeds": 2, "data_root": os.environ["SRPRIOR_DATA"],
                                           "benchmarks": "set5", "steps": 20})).trials}
    assert {r.data.tags[contracts.RUN_KEY] for r in runs} == plan_keys
    assert {r.data.metrics["system/fused_members"] for r in runs} == {2.0}
    assert len(list((smoke_sweep / "ray" / "train").glob("train-group-*"))) == 2
    client = MlflowClient(uri)
    parent = tracking.find_runs(client, runs[0].info.experiment_id, {"srprior.role": "sweep"})
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert run.data.params["preset"] == "edsr-t-micro" and run.data.params["steps"] == "20"
        assert run.data.params["lambda_ap"] == ("0.0" if run.data.tags["row"].endswith("baseline") else "0.0001")
        for key in ("psnr_set5", "ssim_set5", "di", "psnr_total", "psnr_ssr", "psnr_poi"):
            assert f"best/{key}" in run.data.metrics and f"final/{key}" in run.data.metrics, key
        m = run.data.metrics
        assert 5 < m["best/psnr_set5"] < 60 and 0 < m["best/ssim_set5"] <= 1 and 0 < m["best/di"] < 100
        assert m["best_step"] in (10, 20)  # model selection on the validation points
        # every curve point exactly once: log_every 5, val_every 10, 20 steps
        for key, steps in (("train/loss", [5, 10, 15, 20]), ("train/l1", [5, 10, 15, 20]),
                           ("train/l_ap", [5, 10, 15, 20]), ("val/psnr", [10, 20])):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == steps, key
    assert _artifacts(smoke_sweep, parent[0].info.run_id, "report") == \
        {"table-smoke.md", "table-smoke.csv", "table-smoke.html", "summary-smoke.png"}
    md = (smoke_sweep / "reports" / "acceptance" / "table-smoke.md").read_text()
    for label, thesis in (("| EDSR-T | Baseline | 2/2 |", "(37.42 ± 0.0553)"),
                          ("| EDSR-T | w/ ours, λ_AP=1e-4 | 2/2 |", "(37.44 ± 0.0257)")):
        line = next(line for line in md.splitlines() if line.startswith(label))
        set5 = line.split("|")[4]
        assert "±" in set5.split("(")[0] and thesis in set5, line
    # the caption of what ran in every view; † ‡ paired over the seed-matched best metric (scipy's ttest_rel)
    assert "**Setting:** smoke budget: 20 steps, 2 seeds per row" in md and "paired t-test over the seeds" in md
    from scipy import stats as sps

    from srprior.report.cells import sweep_cells
    from srprior.report.model import build_report
    from srprior.search_spaces import get_table

    cells, sweep_id, parent_id, readings = sweep_cells("smoke", uri, "acceptance")
    report = build_report(get_table("smoke"), uri, cells, sweep_id, parent_id, readings)
    best = {(r.data.tags["row"], int(r.data.tags["seed"])): r.data.metrics["best/psnr_set5"] for r in runs}
    ours = next(r for r in report.rows if r.row.baseline is not None).cells["psnr_set5"]
    ref = sps.ttest_rel([best[(ROWS[1], s)] for s in (0, 1)], [best[(ROWS[0], s)] for s in (0, 1)])
    assert ours.test == "paired" and ours.p_value == pytest.approx(ref.pvalue, abs=1e-6)


@pytest.mark.slow
def test_second_run_reuses_every_run_and_retrain_trains_again(smoke_sweep, capsys):
    """Acceptance: the same smoke table again trains nothing (no Ray), reuses every run and prints the same
    report numbers; --retrain trains again into new runs tagged srprior.retrain; MLflow then holds exactly one
    original run per (science config, seed) plus the retrained ones."""
    capsys.readouterr()
    started = time.monotonic()
    opts = _opts(smoke_sweep, name="again", data_root=os.environ["SRPRIOR_DATA"], benchmarks="set5")
    assert run_sweep(SweepOptions.of(opts)) == 0
    assert time.monotonic() - started < 60
    out = capsys.readouterr().out
    assert "to train: 0 · reused (FINISHED in MLflow): 4" in out
    assert "4 cell(s) reuse runs" in (smoke_sweep / "reports" / "again" / "table-smoke.md").read_text()
    first = (smoke_sweep / "reports" / "acceptance" / "table-smoke.csv").read_text()
    again = (smoke_sweep / "reports" / "again" / "table-smoke.csv").read_text()
    assert first == again  # the same numbers, cell for cell
    uri = tracking.default_tracking_uri(smoke_sweep)
    assert _trial_runs(uri, **{"srprior.sweep_id": "again"}) == []
    retrain = _opts(smoke_sweep, name="retrained", data_root=os.environ["SRPRIOR_DATA"], benchmarks="set5",
                    rows=ROWS[1], seeds=1, retrain=True, fuse=1)
    assert run_sweep(SweepOptions.of(retrain)) == 0
    runs = _trial_runs(uri)
    keys = [r.data.tags[contracts.RUN_KEY] for r in runs if contracts.RETRAIN not in r.data.tags]
    retrained = [r for r in runs if contracts.RETRAIN in r.data.tags]
    assert len(keys) == len(set(keys)) == 4
    assert [(r.data.tags[contracts.RETRAIN], r.data.tags["row"], r.data.tags["seed"], r.info.status)
            for r in retrained] == [("retrained", ROWS[1], "0", "FINISHED")]
    assert retrained[0].data.tags[contracts.RUN_KEY] in keys


@pytest.mark.slow
def test_worker_kill_resumes_from_checkpoint(local_ray, tmp_path):
    """The worker dies once at step 15 (checkpoint at 10): Train restarts it from the checkpoint, the MLflow
    run continues (one run, every curve point exactly once) and the figures arrive."""
    opts = _opts(tmp_path, name="fault", seeds=1, rows=ROWS[0], fault_kill_at_step=15, figures=True)
    assert run_sweep(SweepOptions.of(opts)) == 0
    train_dirs = [p for p in (tmp_path / "ray" / "train").iterdir() if p.name != "leases"]  # trial leases beside
    assert len(train_dirs) == 1 and (train_dirs[0] / "fault-killed-at-15").exists()
    uri = tracking.default_tracking_uri(tmp_path)
    (run,) = _trial_runs(uri)
    assert run.data.tags["srprior.resumed_at_step"] == "10"
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [5, 10, 15, 20]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/psnr")] == [10, 20]
    assert _artifacts(tmp_path, run.info.run_id, "figures") == {"ssm.png", "lam.png", "sr_comparison.png"}
    # held out on the embedded default: the run names the images that selected its model and those that report it
    images = tracking.read_json_artifact(uri, run.info.run_id, contracts.IMAGES_ARTIFACT)
    val, test = ({i.split(":")[0]: i.rsplit(":", 1)[1] for i in ids}
                 for ids in (images["val"], images["test"]["embedded"]))
    assert val and test and not set(val) & set(test) and not set(val.values()) & set(test.values())
    curve = [m.value for m in client.get_metric_history(run.info.run_id, "val/psnr")]
    assert run.data.metrics["best/psnr_embedded"] not in curve  # a test number, not the best validation point
    import torch

    (last,) = sorted(p for p in train_dirs[0].glob("checkpoint_*") if p.is_dir())[-1:]
    state = torch.load(last / "state.pt", weights_only=False)
    assert state["step"] == 20 and state["run_id"] == run.info.run_id
    assert {"model", "optimizer", "rng", "sampler", "trial"} <= set(state) and len(state["sampler"]) == 1
    assert train_dirs[0].name == f"train-{run.data.tags[contracts.RUN_KEY]}"  # checkpoints are content-addressed


@pytest.mark.slow
def test_search_mode_repeats_each_config_over_seeds(local_ray, tmp_path):
    opts = {"search": "smoke", "budget": "smoke", "samples": 1, "seeds": 2, "output_dir": str(tmp_path),
            "name": "search", "address": None}
    assert run_sweep(SweepOptions.of(opts)) == 0
    runs = _trial_runs(tracking.default_tracking_uri(tmp_path), "srprior/search-smoke")
    assert len(runs) == 2 and {r.data.tags["seed"] for r in runs} == {"0", "1"}
    assert len({r.data.tags["row"] for r in runs}) == 1  # one Optuna configuration, two seeds
    params = [{k: r.data.params[k] for k in ("lambda_ap", "w", "n_ssr", "scenario")} for r in runs]
    assert params[0] == params[1]
    md = (tmp_path / "reports" / "search" / "table-search-smoke.md").read_text()
    assert sum(line.startswith("| edsr-t-micro | λ_AP=") for line in md.splitlines()) == 1 and "| 2/2 |" in md
    from srprior.cli import main

    assert main(["report", "--search", "smoke", "--output-dir", str(tmp_path)]) == 0


def _terminated(experiment: Path) -> list[dict]:
    """Trials Tune's saved experiment state marks TERMINATED (what --resume will not rerun)."""
    for state in sorted(experiment.glob("experiment_state-*.json"))[-1:]:
        try:
            trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
        except (json.JSONDecodeError, OSError):
            return []
        return [t for t in trials if t["status"] == "TERMINATED"]
    return []


@pytest.mark.slow
def test_driver_kill_then_resume(local_ray, tmp_path):
    """Kill the sweep process (and all it started) once Tune has recorded a finished trial; --resume runs only
    the rest: exactly one MLflow run per (row, seed), finished trials untouched."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, str(REPO / "sweep.py"), "--table", "smoke", "--seeds", "2", "--name", "killed",
           "--output-dir", str(tmp_path), "--max-concurrent", "1", "--address", "local", "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline, done = time.monotonic() + 300, []
    try:
        while time.monotonic() < deadline and proc.poll() is None and not done:
            time.sleep(1)
            done = _terminated(tmp_path / "ray" / "killed")
        assert proc.poll() is None and done, "no trial finished before the sweep ended or the deadline"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every process of its session
        proc.wait()
    uri = tracking.default_tracking_uri(tmp_path)
    before = {r.info.run_id: r for r in _trial_runs(uri) if r.info.status == "FINISHED"}
    finished = {(m["labels"][0][1], str(m["trial"]["seed"])) for t in done for m in t["config"]["trial"]["members"]}
    assert finished <= {(r.data.tags["row"], r.data.tags["seed"]) for r in before.values()}
    assert len(finished) < 4  # something left to resume
    assert run_sweep(SweepOptions.of({"resume": "killed", "output_dir": str(tmp_path), "address": None})) == 0
    runs = _trial_runs(uri)
    assert sorted((r.data.tags["row"], r.data.tags["seed"]) for r in runs) == \
        sorted((row, seed) for row in ROWS for seed in ("0", "1"))
    client = MlflowClient(uri)
    for run in runs:
        assert run.info.status == "FINISHED"
        if (run.data.tags["row"], run.data.tags["seed"]) in finished:  # not rerun
            assert run.info.end_time == before[run.info.run_id].info.end_time
            assert len(client.get_metric_history(run.info.run_id, "best/psnr_embedded")) == 1
