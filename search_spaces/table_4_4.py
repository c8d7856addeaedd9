"""Table 4.4 (§4.5.1): the number N_SSR of SSRs, local (7×7 window, Scenario 1) or arbitrary (rows marked *).

Numbers exactly as printed. Doubtful: EDSR-T rows N_SSR = 2, 3 and 1* print exactly the same stds as the
N_SSR = 1 row (0.0257, 0.0001, 0.0131, …) — probably copied in the thesis; transcribed as printed anyway.
The thesis runs the arbitrary (*) rows on EDSR-T only.
"""

from srprior.contracts import DI
from srprior.search_spaces.spec import BENCH_METRICS, TableSpec, baseline_row, bench, prior_row


def _n(group: str, preset: str, n_ssr: int, thesis: str, arbitrary: bool = False):
    suffix, label = (f"n_ssr-{n_ssr}-arbitrary", f"w/ ours, N_SSR={n_ssr}*") if arbitrary else \
        (f"n_ssr-{n_ssr}", f"w/ ours, N_SSR={n_ssr}")
    return prior_row(group, preset, suffix, label, bench(thesis), n_ssr=n_ssr,
                     scenario="arbitrary" if arbitrary else "local")


TABLE = TableSpec(
    name="4.4",
    title="Number N_SSR of self-similar regions: local vs arbitrary (*) placement",
    description="×2 SR, λ_AP = 1e-4, w = Sim; N_SSR ∈ {1, 2, 3} inside the 7×7 local window, and (EDSR-T) "
                "anywhere in the image (*).",
    metrics=(*BENCH_METRICS, DI),
    rows=(
        baseline_row("EDSR-T", "edsr-t", bench(
            "37.42±0.0553 0.9585±0.0001 33.01±0.0319 0.9127±0.0001 31.78±0.0147 "
            "0.8947±0.0001 30.60±0.0239 0.9118±0.0004 28.24±0.0439 0.9146±0.0007")),
        _n("EDSR-T", "edsr-t", 1,
           "37.44±0.0257 0.9586±0.0001 33.03±0.0131 0.9127±0.0001 31.78±0.0121 "
           "0.8946±0.0002 30.61±0.0125 0.9119±0.0001 28.26±0.0342 0.9150±0.0005"),
        _n("EDSR-T", "edsr-t", 2,
           "37.42±0.0257 0.9585±0.0001 33.02±0.0131 0.9128±0.0001 31.77±0.0121 "
           "0.8947±0.0002 30.59±0.0125 0.9118±0.0001 28.23±0.0342 0.9148±0.0005"),
        _n("EDSR-T", "edsr-t", 3,
           "37.43±0.0257 0.9585±0.0001 33.02±0.0131 0.9128±0.0001 31.77±0.0121 "
           "0.8946±0.0002 30.59±0.0125 0.9118±0.0001 28.23±0.0342 0.9148±0.0005"),
        _n("EDSR-T", "edsr-t", 1,
           "37.45±0.0257 0.9586±0.0001 33.02±0.0131 0.9126±0.0001 31.78±0.0121 "
           "0.8947±0.0002 30.62±0.0125 0.9121±0.0001 28.25±0.0342 0.9152±0.0005", arbitrary=True),
        _n("EDSR-T", "edsr-t", 2,
           "37.44±0.0119 0.9585±0.0001 33.01±0.0318 0.9126±0.0002 31.77±0.0203 "
           "0.8946±0.0003 30.62±0.0296 0.9120±0.0003 28.24±0.0374 0.9150±0.0006", arbitrary=True),
        _n("EDSR-T", "edsr-t", 3,
           "37.48±0.0367 0.9586±0.0001 33.03±0.0093 0.9126±0.0001 31.77±0.0138 "
           "0.8946±0.0001 30.62±0.0089 0.9121±0.0001 28.26±0.0067 0.9153±0.0003", arbitrary=True),
        baseline_row("RCAN-T", "rcan-t", bench(
            "37.79±0.0202 0.9599±0.0001 33.39±0.0183 0.9162±0.0002 32.05±0.0148 "
            "0.8982±0.0002 31.64±0.0089 0.9236±0.0001 29.60±0.0287 0.9318±0.0002")),
        _n("RCAN-T", "rcan-t", 1,
           "37.78±0.0208 0.9599±0.0001 33.39±0.0075 0.9163±0.0001 32.05±0.0128 "
           "0.8983±0.0001 31.63±0.0485 0.9236±0.0003 29.58±0.0636 0.9317±0.0008"),
        _n("RCAN-T", "rcan-t", 2,
           "37.76±0.0375 0.9598±0.0001 33.36±0.0237 0.9157±0.0003 32.03±0.0382 "
           "0.8979±0.0005 31.55±0.1552 0.9227±0.0015 29.51±0.1590 0.9306±0.0021"),
        _n("RCAN-T", "rcan-t", 3,
           "37.77±0.0268 0.9599±0.0002 33.35±0.0136 0.9158±0.0004 32.04±0.0230 "
           "0.8980±0.0004 31.61±0.0853 0.9232±0.0010 29.57±0.0830 0.9313±0.0011"),
    ),
)
