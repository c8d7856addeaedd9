"""Declarative thesis tables and Optuna search spaces (mapped from search_spaces/ into srprior.search_spaces).

One module per thesis table (like experiment configs): `TABLES["4.2"]` is a `spec.TableSpec` whose
`cells()` the planner turns into trials and whose thesis numbers the report prints beside ours. `search.SEARCHES`
holds the Optuna spaces of the `search` mode.
"""

from __future__ import annotations

from srprior.search_spaces import (readings, selectors, smoke, table_4_2, table_4_3, table_4_4, table_4_5, table_4_6, table_4_7,
                                   table_4_8)
from srprior.search_spaces.spec import Row, TableSpec

__all__ = ["TABLES", "Row", "TableSpec", "get_table"]

TABLES: dict[str, TableSpec] = {
    module.TABLE.name: module.TABLE
    for module in (table_4_2, table_4_3, table_4_4, table_4_5, table_4_6, table_4_7, table_4_8, smoke, readings,
                   selectors)
}


def get_table(name: str) -> TableSpec:
    """The spec of thesis table `name` ("4.2", also "table-4.2" / "table_4_2")."""
    key = name.strip().lower().removeprefix("table").strip("-_ ").replace("_", ".")
    if key not in TABLES:
        raise KeyError(f"unknown table {name!r}; available: {', '.join(TABLES)}")
    return TABLES[key]
