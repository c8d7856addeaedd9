"""HardCases-R's selectors: λ_AP = 0 baselines on seeds no thesis table runs (contracts.SELECTOR_SEEDS).

`srprior data hardcases` picks its crops with these networks only. Gu et al.'s protocol chooses the crops where
"SR networks" do worst and disagree most; if those were the very baselines a table then compares against prior
rows, crops chosen for the baselines' bad luck would favour every challenger (regression to the mean). Seeds
>= SELECTOR_SEEDS[0] are refused for every other table (spec._check_seeds), so no compared run is a selector.
Not a thesis table: no printed numbers; its report only shows how well the selectors trained.
"""

from srprior.contracts import SELECTOR_SEEDS
from srprior.contracts import DI
from srprior.search_spaces.spec import BENCH_METRICS, TableSpec, baseline_row

TABLE = TableSpec(
    name="selectors",
    title="HardCases-R selectors: baselines on reserved seeds",
    description=f"×2 SR, λ_AP = 0, seeds {SELECTOR_SEEDS}: the networks that choose HardCases-R's crops "
                "(`srprior data hardcases`); never compared in a thesis table.",
    metrics=(*BENCH_METRICS[:8], DI),
    rows=(baseline_row("EDSR-T", "edsr-t", {}), baseline_row("RCAN-T", "rcan-t", {}),
          baseline_row("RNAN-T", "rnan-t", {})),
    seeds=SELECTOR_SEEDS,
    selectors=True,
)
