"""deploy/slurm/srprior.sbatch on a real single-node Slurm (Debian's slurm-wlm and munge, which `.ci/run`
installs): munged with a generated key, slurmctld and slurmd from a slurm.conf generated for this host in a temp
dir, everything on loopback and stopped at the end. Two jobs of the script share the node at once (distinct Ray
ports, both finish): one runs a smoke table to FINISHED runs and its report; the other reaches its time limit
mid-training (short --time, early SIGUSR1), stops the sweep, requeues itself, resumes it and ends with one FINISHED
run per trial key, no step trained twice. A wrong option is one line in the job's log before Ray starts.

Skips with the reason where Slurm cannot start (not root, packages absent); under CI=true it must run."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from srprior import contracts, tracking

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "slurm" / "srprior.sbatch"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
THIN = ["--table", "smoke", "--rows", "edsr-t-micro/baseline", "--seeds", "1", "--no-di"]


def _bin(name: str) -> str:
    """Slurm's daemons live in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "Slurm's daemons need root here (slurmd runs jobs as their user)"
    missing = [d for d in DAEMONS if not Path(_bin(d)).exists()]
    return f"Slurm is not installed (missing {', '.join(missing)}; .ci/run installs slurm-wlm and munge)" \
        if missing else None


def _free_port() -> int:
    return tracking.free_port("127.0.0.1")


def _conf(d: Path, host: str) -> str:
    """A one-node cluster on loopback: no cgroups (linuxproc tracking), requeue allowed, a requeued job eligible
    10 s later (cred_expire) and scheduled within 5 s."""
    return f"""ClusterName=srprior-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d / 'munge.sock'},cred_expire=10
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=5
JobRequeue=1
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=600
InactiveLimit=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    """The running cluster: `env` points Slurm's commands at it."""

    def __init__(self, d: Path):
        own = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SLURM_", "SRPRIOR_OUT"))}
        self.dir, self.env = d, {**own, "SLURM_CONF": str(d / "slurm.conf"), "SRPRIOR_PYTHON": sys.executable}

    def run(self, *cmd: str, timeout: float = 60) -> str:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True, timeout=timeout).stdout

    def submit(self, cwd: Path, *args: str) -> str:
        return self.run("sbatch", "--parsable", f"--chdir={cwd}", *args).strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        text = self.run("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job_id: str, timeout: float, on_restart=None) -> dict[str, str]:
        deadline, restarts = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            info = self.job(job_id)
            if on_restart and int(info["Restarts"]) > restarts:
                restarts = int(info["Restarts"])
                on_restart(job_id)
            if info["JobState"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(2)
        self.run("scancel", job_id)
        raise AssertionError(f"job {job_id} did not end in {timeout} s: {self.job(job_id)}")


def _start(d: Path) -> Slurm:
    host = socket.gethostname()
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    key = d / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    subprocess.run([_bin("munged"), "--force", f"--key-file={key}", f"--socket={d / 'munge.sock'}",
                    f"--pid-file={d / 'munged.pid'}", f"--log-file={d / 'munged.log'}",
                    f"--seed-file={d / 'munged.seed'}"], check=True, timeout=30)
    (d / "slurm.conf").write_text(_conf(d, host))
    slurm = Slurm(d)
    conf = str(d / "slurm.conf")
    subprocess.run([_bin("slurmctld"), "-f", conf, "-c"], env=slurm.env, check=True, timeout=30)
    subprocess.run([_bin("slurmd"), "-f", conf, "-N", host], env=slurm.env, check=True, timeout=30)
    deadline = time.monotonic() + 60
    while slurm.run("sinfo", "-h", "-o", "%T").strip() != "idle":
        if time.monotonic() > deadline:
            raise RuntimeError(f"slurmd did not register:\n{(d / 'slurmctld.log').read_text()[-2000:]}")
        time.sleep(0.5)
    return slurm


def _stop(slurm: Slurm | None, d: Path) -> None:
    """Cancel what still runs (a failed test's job: its script stops its Ray on SIGTERM), then the daemons."""
    if slurm is not None:
        jobs = slurm.run("squeue", "-h", "-o", "%i").split()
        if jobs:
            slurm.run("scancel", *jobs)
            deadline = time.monotonic() + 90
            while slurm.run("squeue", "-h", "-o", "%i").split() and time.monotonic() < deadline:
                time.sleep(1)
    pids = []
    for name in ("slurmd", "slurmctld", "munged"):
        pid_file = d / f"{name}.pid"
        try:
            pids.append(int(pid_file.read_text().split()[0]))
            os.kill(pids[-1], 15)
        except (OSError, ValueError, IndexError):
            pass
    deadline = time.monotonic() + 30
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = _unavailable()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the Slurm tests")
        pytest.skip(reason)
    d = Path(tmp_path_factory.mktemp("slurm"))
    d.chmod(0o700)
    slurm = None
    try:
        slurm = _start(d)
        yield slurm
    finally:
        _stop(slurm, d)


def _runs(out: Path) -> list:
    client = tracking.client(tracking.default_tracking_uri(out))
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    return contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "trial"}))


def _log(cwd: Path, job_id: str) -> str:
    """The job's log, its progress bar's carriage returns as line breaks."""
    return (cwd / f"srprior-{job_id}.out").read_text().replace("\r", "\n")


def _script(env: dict, *args: str) -> subprocess.CompletedProcess:
    """The batch script run as SLURM would start it on the head, with this job environment (no Slurm needed for
    the checks that come before Ray)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_"))}
    return subprocess.run(["bash", str(SCRIPT), *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


JOB = {"SLURM_JOB_ID": "4711", "SLURM_JOB_NUM_NODES": "1", "SLURM_CPUS_ON_NODE": "8"}


@pytest.mark.parametrize("env, args, line", [
    (None, THIN, "not inside a SLURM job: submit it with sbatch [options] {script} [sweep options]"),
    ({"SLURM_JOB_NUM_NODES": "2"}, THIN, "2 nodes need the sweep's checkpoints on storage every node mounts: add "
     "--shared-storage (with --storage or --output-dir on the cluster's shared filesystem) or --storage "
     "s3://BUCKET/PATH"),
    ({"SLURM_JOB_NUM_NODES": "2"}, [*THIN, "--shared-storage", "--budget=short"],  # storage checked, then GPUs
     "--budget short trains on GPUs, but this allocation has none: sbatch --gpus-per-node=N ... (or --budget "
     "smoke / cpu-hour on CPUs)"),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, [*THIN, "--gpus-per-trial", "0.5"],
     "--gpus-per-trial 0.5: this allocation has no GPU (sbatch --gpus-per-node=N ...)"),
    ({"SLURM_JOB_CPUS_PER_NODE": "8,4", "SLURM_JOB_NUM_NODES": "2"}, [*THIN, "--shared-storage"],
     "the nodes of this allocation have different CPU counts (SLURM_JOB_CPUS_PER_NODE=8,4): ask for the same on "
     "each, e.g. sbatch --ntasks-per-node=1 --cpus-per-task=C, or --exclusive"),
    ({}, [*THIN, "--address", "10.0.0.1:6379"], "--address: this script starts Ray on the allocation itself; leave "
     "--address out"),
])
def test_a_wrong_option_or_allocation_is_one_line_before_anything_starts(tmp_path, env, args, line):
    job = {} if env is None else {**JOB, **env}  # None: outside a job
    result = _script({**job, "SRPRIOR_OUTPUT": str(tmp_path / "out")}, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"srprior.sbatch: error: {line.format(script=SCRIPT)}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_wrong_option_is_one_line_in_the_job_log_before_ray(slurm, tmp_path):
    job = slurm.submit(tmp_path, "-c", "1", str(SCRIPT), *THIN, "--budget", "thesis", "--output-dir",
                       str(tmp_path / "out"))
    info = slurm.wait(job, 120)
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "2:0")
    assert _log(tmp_path, job).splitlines() == [
        "srprior.sbatch: error: --budget thesis trains on GPUs, but this allocation has none: sbatch "
        "--gpus-per-node=N ... (or --budget smoke / cpu-hour on CPUs)"]
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def _first_checkpoint(out: Path, deadline: float) -> None:
    """Until a Train run under `out` has written a checkpoint (Train's snapshot of its kept checkpoints)."""
    while not any(p.stat().st_size for p in (out / "ray" / "train").glob("train-*/checkpoint_manager_snapshot.json")):
        assert time.monotonic() < deadline, "job B wrote no checkpoint"
        time.sleep(1)


def _job_listeners(job_id: str) -> dict[str, str]:
    """Listening TCP sockets of a running job's batch step and everything under it (Ray, the sweep, MLflow)."""
    from test_sweep_faults import _listeners

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if title == f"slurmstepd: [{job_id}.batch]":
            return _listeners(int(pid))
    raise AssertionError(f"no batch step of job {job_id} is running")


def _seconds(runtime: str) -> int:
    days, _, hms = runtime.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


@pytest.mark.slow
def test_two_jobs_on_one_node_one_finishes_one_outlives_its_time_limit(slurm, tmp_path):
    """Job A: the smoke table to FINISHED runs and its report. Job B, at the same time on the same node, asks
    for SIGUSR1 180 s before its limit; once it trains (a checkpoint written), its limit is cut so that the
    signal comes at Slurm's next time-limit check (every 30 s) with 90-180 s left: it stops the sweep
    (INCOMPLETE, runs KILLED), requeues itself, and the requeued job (its limit back at 30 min) resumes it:
    one FINISHED run per key, resumed from its checkpoint, every curve point once."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    started = time.monotonic()
    job_b = slurm.submit(b_dir, "-c", "1", "--time=30", "--signal=B:USR1@180", str(SCRIPT), *THIN,
                         "--steps", "400", "--output-dir", str(b_dir / "out"))
    job_a = slurm.submit(a_dir, "-c", "1", str(SCRIPT), *THIN, "--steps", "20", "--output-dir", str(a_dir / "out"))
    _first_checkpoint(b_dir / "out", started + 300)
    heard = _job_listeners(job_b)  # while B trains: a one-node job's Ray, sweep and MLflow server on loopback only
    head = re.search(r"Ray head 127\.0\.0\.1:(\d+)", _log(b_dir, job_b)).group(1)
    assert any(a.endswith(f"127.0.0.1]:{head}") or a == f"127.0.0.1:{head}" for a in heard), heard  # Ray's GCS
    assert all(a.startswith(("127.", "[::ffff:127.")) for a in heard), heard
    elapsed = _seconds(slurm.job(job_b)["RunTime"])
    slurm.run("scontrol", "update", f"JobId={job_b}", f"TimeLimit={(elapsed + 180) // 60}")
    info_a = slurm.wait(job_a, 400)
    info_b = slurm.wait(job_b, 600, on_restart=lambda j: slurm.run("scontrol", "update", f"JobId={j}",
                                                                       "TimeLimit=30"))
    print(f"job A ran {info_a['RunTime']}; job B ended {time.monotonic() - started:.0f} s after its submit")
    log_a, log_b = _log(a_dir, job_a), _log(b_dir, job_b)
    assert (info_a["JobState"], info_a["ExitCode"]) == ("COMPLETED", "0:0"), log_a[-3000:]
    assert (info_b["JobState"], info_b["ExitCode"], info_b["Restarts"]) == ("COMPLETED", "0:0", "1"), log_b[-3000:]

    # distinct Ray ports, both on the node at once
    ports = {re.search(r"Ray head 127\.0\.0\.1:(\d+)", log).group(1) for log in (log_a, log_b)}
    assert len(ports) == 2, (log_a[:400], log_b[:400])
    (report,) = (a_dir / "out" / "reports" / f"slurm-{job_a}").glob("*.md")
    assert "| EDSR-T | Baseline | 1/1 |" in report.read_text()
    assert [r.info.status for r in _runs(a_dir / "out")] == ["FINISHED"]

    # B: stopped mid-training by the time limit, requeued, resumed
    assert f"srprior.sbatch: time limit near (SIGUSR1): stopping sweep slurm-{job_b}" in log_b
    assert re.search(r"^INCOMPLETE: stopped by SIGTERM.*; resume with: ", log_b, re.M), log_b[-3000:]
    assert f"srprior.sbatch: requeueing job {job_b}: it resumes sweep slurm-{job_b}" in log_b
    assert "(restart 1)" in log_b and "Traceback" not in log_b
    (run,) = _runs(b_dir / "out")
    print(f"job B: stopped, requeued and resumed at step {run.data.tags.get(contracts.RESUMED_AT)} of 400")
    assert run.info.status == "FINISHED" and 0 < int(run.data.tags[contracts.RESUMED_AT]) < 400, run.data.tags
    steps = [m.step for m in tracking.client(tracking.default_tracking_uri(b_dir / "out")).get_metric_history(
        run.info.run_id, "train/loss")]
    assert steps == list(range(5, 401, 5))  # every curve point once: no step trained twice
