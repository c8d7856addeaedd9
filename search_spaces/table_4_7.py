"""Table 4.7 (§4.5.5): HardCases PSNR on the whole image, on the SSRs and on the PoIs (N_SSR = 5, 17×17 PoI).

An evaluation, not a training experiment: its models are Table 4.2's EDSR-T / RNAN-T baseline and λ_AP = 1e-4
rows (the setting the thesis keeps for all later experiments), so the rows reuse those ids and overrides; their
science equals Table 4.2's, so the planner reuses Table 4.2's runs (content-addressed) and trains nothing new
(the trainer logs psnr_total / psnr_ssr / psnr_poi for every trial). Numbers exactly as printed; the thesis's "Δ ↑" columns are derived (ours − baseline) and not kept.
"""

from dataclasses import replace

from srprior.search_spaces.spec import REGION_METRICS, TableSpec, parse_cells
from srprior.search_spaces.table_4_2 import TABLE as TABLE_4_2


def _region(row_id: str, thesis: str):
    return replace(TABLE_4_2.row(row_id), thesis=parse_cells(REGION_METRICS, thesis))


TABLE = TableSpec(
    name="4.7",
    title="PSNR on SSRs and PoIs of HardCases",
    description="Table 4.2's models evaluated on HardCases: total PSNR, PSNR on N_SSR = 5 SSRs per image and on "
                "the 17×17 PoIs.",
    metrics=REGION_METRICS,
    rows=(
        _region("edsr-t/baseline", "32.2438±0.1513 32.2529±0.1436 32.2348±0.1600"),
        _region("edsr-t/lambda-1e-4", "32.3844±0.0725 32.3559±0.0659 32.4129±0.0848"),
        _region("rnan-t/baseline", "32.3345±0.2440 32.3289±0.2656 32.3401±0.2225"),
        _region("rnan-t/lambda-1e-4", "32.5135±0.0545 32.5116±0.0767 32.5155±0.0362"),
    ),
)
