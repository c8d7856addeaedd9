"""A report's files (table-<name>.{md,csv,html}, summary-<name>.png) and their copy on the sweep's parent run,
so the table travels with the runs it was computed from."""

from __future__ import annotations

import shutil
from pathlib import Path

from srprior import tracking
from srprior.report.model import ARTIFACT_DIR, Report
from srprior.report.render import to_csv, to_html, to_markdown

def write_report(report: Report, out_dir: str | Path, log_artifacts: bool = True,
                 tracking_uri: str | None = None) -> dict[str, Path]:
    """Write table-<name>.{md,csv,html} and summary-<name>.png into `out_dir`; log them to the sweep's parent
    run when there is one
    (through `tracking_uri`, e.g. the sweep's live server, when the report names the store by its path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table-{report.spec.name}"
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("html", to_html)):
        paths[ext] = out / f"{stem}.{ext}"
        paths[ext].write_text(render(report), encoding="utf-8")
    from srprior.report.plots import summary_plot

    try:  # PSNR and DI against λ_AP per model (or per row), every seed a dot
        paths["png"] = summary_plot(report, out / f"summary-{report.spec.name}.png")
    except ValueError:  # nothing to plot (no PSNR or DI values yet)
        pass
    if log_artifacts and report.parent_run_id:
        _log_artifacts(tracking_uri or report.tracking_uri, report.parent_run_id, list(paths.values()))
    return paths


def _log_artifacts(tracking_uri: str, run_id: str, paths: list[Path]) -> None:
    """Attach `paths` to the run under report/.

    Sweeps write through a local `mlflow server` (srprior.tracking), so their runs' artifact URIs are
    mlflow-artifacts:/<path>, which only a server can resolve; reading the SQLite store directly, we put the files
    where that server keeps them (<store folder>/mlartifacts/<path>) instead of starting one.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    served = tracking.served_artifacts(tracking_uri, client.get_run(run_id).info.artifact_uri)
    if served is not None:
        target = served / ARTIFACT_DIR
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copyfile(path, target / path.name)
        return
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_DIR)
