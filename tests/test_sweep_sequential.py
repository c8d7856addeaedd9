"""`srprior sweep --until-decided` on a real local Ray (2 CPUs) and a real MLflow store: two looks of the smoke
budget's design over three Table 4.2 rows, one of them named by no claim (micro models, 20 steps)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from mlflow.tracking import MlflowClient  # noqa: E402

from srprior.options import SweepOptions
from srprior import contracts, designs, tracking  # noqa: E402
from srprior.sequential import Design  # noqa: E402
from srprior.sweep import launch  # noqa: E402
from srprior.sweep.sequential import TAG, run_sequential  # noqa: E402

CLAIMED = ("edsr-t/baseline", "edsr-t/lambda-1e-4")
UNCLAIMED = "edsr-t/lambda-5e-4"


@pytest.fixture(scope="module")
def local_ray():
    launch.start_local_ray(2)
    yield
    ray.shutdown()


def _trained(uri: str, sweep_id: str) -> set[tuple[str, int]]:
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    runs = contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "trial",
                                                                    contracts.SWEEP_ID: sweep_id}))
    return {(r.data.tags["row"], int(r.data.tags["seed"])) for r in runs}


@pytest.mark.slow
def test_sequential_sweep_second_look_trains_only_rows_of_undecided_claims(local_ray, tmp_path, monkeypatch,
                                                                           capsys):
    """Look 1 (the pilot) trains 3 rows × 2 seeds; the claim on these rows cannot cross at look 1 (α = 1e-6
    spends nothing there), so look 2 trains seed 2 of its two rows only: the row of no claim keeps the pilot, and
    the pilot's FINISHED trials are reused, not trained again. The claim ends at its cap, named in the output,
    in sequential.json and on the parent run."""
    monkeypatch.setitem(designs.DESIGNS, "smoke", (Design((2, 3), alpha=1e-6, futility=0.0), {}))
    opts = {"table": "4.2", "budget": "smoke", "rows": ",".join((*CLAIMED, UNCLAIMED)), "steps": 20,
            "output_dir": str(tmp_path), "name": "seq", "until_decided": True}
    assert run_sequential(SweepOptions.of(opts)) == 0
    uri = tracking.default_tracking_uri(tmp_path)
    assert _trained(uri, "seq-look-1") == {(row, s) for row in (*CLAIMED, UNCLAIMED) for s in (0, 1)}
    assert _trained(uri, "seq-look-2") == {(row, 2) for row in CLAIMED}
    out = capsys.readouterr().out
    assert "look 2 of 2: sweep seq-look-2" in out and "reused (FINISHED in MLflow): 6" in out
    data = json.loads((tmp_path / "reports" / "seq" / "sequential.json").read_text())["4.2"]
    found = {e["claim"]: (e["look"], e["why"], e["pairs"], e["test"]) for e in data}
    assert found.pop("4.2:edsr-t/lambda-1e-4-vs-edsr-t/baseline:psnr_hardcases") == (2, "cap", 3, "paired t")
    # §4.4.1's DI claim on these rows is direction-only: it buys no seeds and is tested once, at the pilot
    assert found == {"4.2:edsr-t/lambda-1e-4-vs-edsr-t/baseline:di": (1, "cap", 2, "paired t")}
    assert all(e["proxy"] and "edsr-t-micro" in e["proxy"] for e in data)  # micro presets: a proxy, never bare
    table = (tmp_path / "reports" / "seq" / "sequential.md").read_text()
    assert "| 2 | reached its cap | paired t | 3 |" in table and "proxy: edsr-t-micro" in table
    assert "undecided at look 2 (reached its cap): paired t over 3 seeds" in out
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    parent, = contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "sweep",
                                                                       contracts.SWEEP_ID: "seq-look-2"}))
    assert json.loads(parent.data.tags[TAG]) == data
    # the same command again: both looks are resumed from their state, nothing trains, the same decisions
    assert run_sequential(SweepOptions.of(opts)) == 0
    assert _trained(uri, "seq-look-2") == {(row, 2) for row in CLAIMED}
    assert json.loads((tmp_path / "reports" / "seq" / "sequential.json").read_text())["4.2"] == data
