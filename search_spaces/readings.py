"""The readings spec: EDSR-T under each reading of the thesis that the text leaves open (README: The method).

Not a thesis table (no printed numbers): a GPU sweep of it (`srprior sweep --table readings --budget short`)
says which reading moves the numbers, and which reproduces Tables 4.2/4.5 best. Every prior row is Table 4.2's
"w/ ours, λ_AP = 1e-4" row with one reading changed; the eval-only readings (DI channels, border shave) train
the same model as the default row and differ in their evaluation only; `val_crop` changes only which checkpoint
is selected.
"""

from srprior.contracts import BENCH_METRICS, DI
from srprior.search_spaces.spec import TableSpec, baseline_row, prior_row


def _reading(suffix: str, label: str, **overrides):
    return prior_row("EDSR-T", "edsr-t", suffix, label, {}, **overrides)


TABLE = TableSpec(
    name="readings",
    title="Readings of the thesis, ablated on EDSR-T",
    description="×2 SR, λ_AP = 1e-4, w = Sim, Scenario 1 unless the row says otherwise; each prior row changes "
                "one reading of the defaults (select_n=5, local_geometry=window, similarity=clamp, "
                "l1_reduction=mean, di_channels=abs-of-sum, extra_shave=0, selection_area=scenario, "
                "invalid_samples=drop, val_crop=256).",
    metrics=(*BENCH_METRICS, DI),
    rows=(
        baseline_row("EDSR-T", "edsr-t", {}),
        _reading("defaults", "w/ ours, the defaults"),
        _reading("select-1", "PoI by its best peak (select_n=1)", select_n=1),
        _reading("select-global", "PoI by the 5 best peaks of its whole SSM", selection_area="global"),
        _reading("keep-invalid", "dissimilar SSRs kept in L_AP (invalid_samples=keep)", invalid_samples="keep"),
        _reading("ring", "Scenario 1 as the ring touching the PoI", local_geometry="ring"),
        _reading("affine", "similarity (ncc + 1) / 2", similarity="affine"),
        _reading("scenario-3", "Scenario 3, clamp", scenario="random-local"),
        _reading("scenario-3-affine", "Scenario 3, (ncc + 1) / 2", scenario="random-local", similarity="affine"),
        _reading("l1-sum", "Eq. 3.10's L1 as a per-image sum", l1_reduction="sum"),
        _reading("di-sum-of-abs", "DI of the sum of |attribution| over RGB", di_channels="sum-of-abs"),
        _reading("shave-6", "PSNR/SSIM with 6 + scale border pixels shaved", extra_shave=6),
        _reading("val-whole", "model selection on whole validation images (val_crop=0)", val_crop=0),
    ),
)
