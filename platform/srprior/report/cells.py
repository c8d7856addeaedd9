"""Which cells a report reads: the ones its sweep recorded on its parent run (contracts.CELLS_ARTIFACT), or
those of a budget's plan, or (--replan) the sweep's plan rebuilt with today's code."""

from __future__ import annotations

from srprior import contracts, tracking
from srprior.options import SweepOptions
from srprior.report.model import ReportError
from srprior.tracking import default_tracking_uri, user_tracking_uri

def resolve_tracking_uri(cli_value: str | None, output_dir: str) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the platform's default store under `output_dir`."""
    return cli_value or user_tracking_uri() or default_tracking_uri(output_dir)


def sweep_cells(table: str, tracking_uri: str, sweep: str = "latest",
                replan: bool = False) -> tuple[list, str | None, str | None, dict]:
    """(cells, sweep id, parent run id, readings) of table `table` in sweep `sweep` ('latest': the newest sweep that
    covered it): the cells and readings the sweep recorded on its parent run (contracts.CELLS_ARTIFACT), so a
    default changed since cannot change what the report looks for. replan: rebuild the plan from the sweep's
    stored options with today's code instead (sweeps that recorded no cells)."""
    if not tracking.store_exists(tracking_uri):
        raise ReportError(f"no MLflow store at {tracking_uri} (file missing): run `srprior sweep --table {table}` "
                          "first, or pass the store with --tracking-uri, MLFLOW_TRACKING_URI or --output-dir")
    client = tracking.client(tracking_uri)
    exp = client.get_experiment_by_name(contracts.table_experiment(table))
    flt = contracts.tag_filter({contracts.ROLE: "sweep", **({contracts.SWEEP_ID: sweep} if sweep != "latest" else {})})
    parents = contracts.search_all(client, [exp.experiment_id], flt, ("attributes.start_time DESC",)) if exp else []
    parents = [p for p in parents if contracts.OPTIONS_TAG in p.data.tags]
    if not parents:
        raise ReportError(f"no sweep {'' if sweep == 'latest' else repr(sweep) + ' '}of table {table} in "
                          f"{tracking_uri}; run `srprior sweep --table {table}` or give --budget to report the "
                          "runs a budget would use")
    parent = parents[0]
    sweep_id, run_id = parent.data.tags.get(contracts.SWEEP_ID), parent.info.run_id
    if not replan:
        recorded = tracking.read_json_artifact(tracking_uri, run_id, contracts.CELLS_ARTIFACT)
        if recorded is None:
            raise ReportError(f"sweep {sweep_id} of table {table} recorded no cells (an srprior older than the "
                              f"record); `srprior report --table {table} --replan` rebuilds its plan with today's "
                              "code (a default changed since would change the cells it looks for)")
        return [tuple(c) for c in recorded["cells"]], sweep_id, run_id, recorded["readings"]
    from srprior.plan import make_plan, plan_readings

    plan = make_plan(SweepOptions.from_json(parent.data.tags[contracts.OPTIONS_TAG]))
    return plan.cells[table], sweep_id, run_id, plan_readings(plan, table)


def budget_plan(table: str, budget: str, seeds: int | None, sets: list[str] | None) -> tuple[list, dict[str, str]]:
    """(cells, readings in force) of `table` as `srprior sweep --table TABLE --budget BUDGET` would plan it."""
    from srprior.plan import make_plan, plan_readings

    plan = make_plan(SweepOptions.of({"table": table, "budget": budget, "seeds": seeds, "set": sets}))
    return plan.cells[table], plan_readings(plan, table)


def budget_cells(table: str, budget: str, seeds: int | None, sets: list[str] | None) -> list:
    return budget_plan(table, budget, seeds, sets)[0]
