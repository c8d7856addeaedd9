"""Table 4.6 (§4.5.4): standard regularizers on EDSR-T instead of the prior — does the prior merely regularize?

Rows, all without the prior (λ_AP = 0): batch normalization in the residual blocks (preset edsr-t-bn), weight
decay 1e-4 (Adam's L2 term), and one residual block fewer (preset edsr-t-15). Numbers exactly as printed
(the WD* row's stds, e.g. 0.0007 dB on Urban100, are unusually small but printed so).
"""

from srprior.contracts import DI
from srprior.search_spaces.spec import BENCH_METRICS, Row, TableSpec, baseline_row, bench


def _regularized(suffix: str, label: str, thesis: str, **overrides):
    return Row(f"edsr-t/{suffix}", "EDSR-T", label, {"preset": "edsr-t", "lambda_ap": 0.0, **overrides},
               bench(thesis), "edsr-t/baseline")


TABLE = TableSpec(
    name="4.6",
    title="Regularization techniques on EDSR-T",
    description="×2 SR, no attribution prior; BN layers, weight decay 1e-4, or 15 instead of 16 residual blocks.",
    metrics=(*BENCH_METRICS, DI),
    rows=(
        baseline_row("EDSR-T", "edsr-t", bench(
            "37.42±0.0553 0.9585±0.0001 33.01±0.0319 0.9127±0.0001 31.78±0.0147 "
            "0.8947±0.0001 30.60±0.0239 0.9118±0.0004 28.24±0.0439 0.9146±0.0007")),
        _regularized("bn", "BN",
                     "34.77±0.3139 0.9405±0.0038 31.31±0.1732 0.8940±0.0046 30.49±0.1237 "
                     "0.8761±0.0024 27.91±0.1091 0.8672±0.0036 25.32±0.1043 0.8489±0.0034", preset="edsr-t-bn"),
        _regularized("weight-decay-1e-4", "WD, 1e-4",
                     "35.15±0.0043 0.9448±0.0001 31.47±0.0043 0.8978±0.0001 30.54±0.0008 "
                     "0.8777±0.0001 27.90±0.0007 0.8699±0.0001 25.28±0.0078 0.8500±0.0002", weight_decay=1e-4),
        _regularized("resblocks-15", "N_ResBlocks=15",
                     "37.35±0.0713 0.9584±0.0001 32.96±0.0130 0.9124±0.0003 31.74±0.0068 "
                     "0.8942±0.0004 30.53±0.0491 0.9111±0.0008 28.16±0.0780 0.9139±0.0014", preset="edsr-t-15"),
    ),
)
