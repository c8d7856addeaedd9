"""A stopping sweep ends its own RUNNING runs KILLED (srprior.stopping.mark_owned_runs) and nobody else's; real
MLflow store in a temp folder."""

from __future__ import annotations

from srprior import contracts, tracking
from srprior.stopping import mark_owned_runs


def test_only_the_sweeps_own_running_runs_are_marked_killed(tmp_path):
    uri = tracking.default_tracking_uri(tmp_path)
    client = tracking.client(uri)
    exp = tracking.experiment_id(client, contracts.table_experiment("smoke"))

    def run(status: str, **tags: str) -> str:
        run_id = client.create_run(exp, tags={contracts.ROLE: "trial", **tags}).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    ours = run("RUNNING", **{contracts.OWNER: "s1"})
    done = run("FINISHED", **{contracts.OWNER: "s1"})
    theirs = run("RUNNING", **{contracts.OWNER: "s2"})
    parent = run("RUNNING", **{contracts.ROLE: "sweep", contracts.SWEEP_ID: "s1"})
    assert sorted(mark_owned_runs(uri, "s1", "stopped by SIGTERM")) == sorted([ours, parent])
    status = {r: client.get_run(r) for r in (ours, done, theirs, parent)}
    assert [status[r].info.status for r in (ours, done, theirs, parent)] == ["KILLED", "FINISHED", "RUNNING", "KILLED"]
    assert status[ours].data.tags[contracts.FAILURE] == "killed: stopped by SIGTERM (sweep s1)"
    assert contracts.FAILURE not in status[done].data.tags  # a FINISHED run is never touched
    assert mark_owned_runs(uri, "s1", "again") == []
