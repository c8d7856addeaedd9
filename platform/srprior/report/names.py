"""Display names of metric columns ("psnr_set5" -> "Set5 PSNR"), shared by the renderers, plots and the claims'
proxy wording."""

from __future__ import annotations

from srprior import contracts

COLUMN_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "set5": "Set5", "set14": "Set14", "bsd100": "BSD100",
                "urban100": "Urban100", "hardcases": "HardCases", "embedded": "Embedded", "di": "DI",
                "psnr_total": "Total PSNR",
                "psnr_ssr": "PSNR on SSR", "psnr_poi": "PSNR on PoI",
                contracts.OBJECTIVE: "Val PSNR", "hardcases_r": "HardCases-R (rebuilt)",
                contracts.CONTROL_SET: "HardCases-R control (random tiles)"}


def column_name(metric: str) -> str:
    if metric in COLUMN_NAMES:
        return COLUMN_NAMES[metric]
    kind, _, bench = metric.partition("_")
    return f"{COLUMN_NAMES.get(bench, bench)} {COLUMN_NAMES.get(kind, kind)}"
