"""A 2-row × 2-seed table for tests and the smoke sweep: EDSR-T-micro without and with the prior.

The thesis numbers are Table 4.2's EDSR-T baseline and λ_AP = 1e-4 rows, shown only as a yardstick: the micro
model trained for a few steps is not expected to reach them.
"""

from dataclasses import replace

from srprior.search_spaces.spec import TableSpec
from srprior.search_spaces.table_4_2 import TABLE as TABLE_4_2


def _micro(row_id: str):
    row = TABLE_4_2.row(row_id)
    micro = row.id.replace("edsr-t/", "edsr-t-micro/")
    baseline = row.baseline and row.baseline.replace("edsr-t/", "edsr-t-micro/")
    return replace(row, id=micro, baseline=baseline, overrides={**row.overrides, "preset": "edsr-t-micro"})


TABLE = TableSpec(
    name="smoke",
    title="Smoke: EDSR-T-micro baseline vs λ_AP = 1e-4",
    description="Two configurations × two seeds for CI; thesis columns are Table 4.2's EDSR-T numbers.",
    metrics=TABLE_4_2.metrics,
    seeds=(0, 1),
    rows=(_micro("edsr-t/baseline"), _micro("edsr-t/lambda-1e-4")),
)
