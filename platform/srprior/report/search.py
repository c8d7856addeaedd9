"""An Optuna search's report: its sampled configurations as the rows of a table."""

from __future__ import annotations

import math

from srprior import contracts, tracking
from srprior.report.model import (Report, ReportError, reported_metrics, summarize, sweep_budget,
                                  with_logged_benchmarks)
from srprior.report.setting import caption, run_params
from srprior.search_spaces.spec import Row, TableSpec

def search_report(name: str, tracking_uri: str, sweep: str = "latest") -> Report:
    """A search as a table: one row per sampled configuration (best mean objective first), mean ± std over its
    seeds, the test of every configuration against the best one (paired over common seeds, else Welch); ranked
    by the selected (best-validation) objective, the value the search optimised."""
    from srprior.search_spaces.search import get_search
    
    spec = get_search(name)
    if not tracking.store_exists(tracking_uri):
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run `srprior sweep --search {name}`")
    client = tracking.client(tracking_uri)
    exp = client.get_experiment_by_name(spec.experiment)
    tags = {contracts.ROLE: "trial"}
    if sweep == "latest" and exp is not None:
        parents = contracts.search_all(client, [exp.experiment_id], contracts.tag_filter({contracts.ROLE: "sweep"}),
                                       ("attributes.start_time DESC",))
        sweep = parents[0].data.tags[contracts.SWEEP_ID] if parents else "latest"
    if sweep != "latest":
        tags[contracts.SWEEP_ID] = sweep
    runs = contracts.search_all(client, [exp.experiment_id], contracts.tag_filter(tags)) if exp else []
    runs = [r for r in runs if r.info.status == "FINISHED" and contracts.OBJECTIVE in r.data.metrics]
    if not runs:
        raise ReportError(f"no finished trial runs of search {name} (sweep {sweep}) at {tracking_uri}")
    by_config: dict[str, list] = {}
    for run in runs:
        by_config.setdefault(run.data.tags[contracts.CONFIG_HASH], []).append(run)
    # the selected (best-validation) objective, as the search optimised it and tables report it
    means = {h: math.fsum(reported_metrics(r.data.metrics)[contracts.OBJECTIVE] for r in rs) / len(rs)
             for h, rs in by_config.items()}
    order = sorted(by_config, key=lambda h: -means[h])
    rows, values = [], {}
    for h in order:
        p = by_config[h][0].data.params
        label = f"λ_AP={float(p['lambda_ap']):.2e}, w={p['w']}, N_SSR={p['n_ssr']}, {p['scenario']}"
        rows.append(Row(f"cfg-{h[:8]}", spec.preset, label, {}, baseline=None if h == order[0] else f"cfg-{order[0][:8]}"))
        values[f"cfg-{h[:8]}"] = {int(r.data.tags[contracts.SEED]): reported_metrics(r.data.metrics)
                                  for r in by_config[h]}
    table = TableSpec(f"search-{name}", f"Optuna search {name}", f"{len(order)} configurations of {spec.preset}; "
                      f"objective: mean {contracts.OBJECTIVE} over seeds; † ‡ against the best configuration.",
                      (contracts.OBJECTIVE,), tuple(rows))
    table = with_logged_benchmarks(table, values)
    parent = None
    if exp is not None:
        found = tracking.find_runs(client, exp.experiment_id, {contracts.ROLE: "sweep", contracts.SWEEP_ID: sweep}) \
            if sweep != "latest" else []
        parent = found[0].info.run_id if found else None
    expected = {row.id: len(values[row.id]) for row in rows}
    ran = {f"cfg-{h[:8]}": [run_params(r.data.params) for r in by_config[h]] for h in order}
    budget = sweep_budget(tracking_uri, parent) if parent else None
    return Report(table, tracking_uri, None if sweep == "latest" else sweep, parent,
                  summarize(table, values, expected), caption=caption(budget, ran))
