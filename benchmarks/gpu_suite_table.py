"""The GPU suite's one table: reads what benchmarks/gpu_suite.sh left in its output folder and the sweep's MLflow
store, prints Markdown (| part | case | plain | prior | notes |) and writes it to <out>/gpu_suite.md.

    python benchmarks/gpu_suite_table.py OUT MLFLOW_URI

OUT holds header.txt, parts.txt (name, exit status, seconds per part) and one log per part (PARTS); MLFLOW_URI
is the sweep's store (trial runs carry system/train_steps_s, system/trial_wall_s, system/to_first_step_s and the
train/loss curve, trainers/worker.py).
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

PARTS = {"step_cost": "step cost", "fused": "fused", "fused_graph": "fused + CUDA graph", "sweep": "sweep"}


def step_cost_rows(log: str) -> list[list[str]]:
    """One row per (variant, preset) of benchmarks/step_cost.py's output; variants are marked '## variant X'."""
    rows, variant, cols = [], "eager", None
    for line in log.splitlines():
        if line.startswith("## variant "):
            variant = line.split()[-1]
        elif line.startswith("device | preset"):
            cols = line.split(" | ")
        elif cols and line.count(" | ") == len(cols) - 1:
            r = dict(zip(cols, line.split(" | ")))
            ms = {k: float(r[k]) for k in ("plain_ms", "prior_ms", "extract_ms", "plain_mib", "prior_mib")}
            rows.append([PARTS["step_cost"], f"{r['preset']} {variant}", f"{ms['plain_ms']:.1f} ms",
                         f"{ms['prior_ms']:.1f} ms",
                         f"prior/plain {ms['prior_ms'] / ms['plain_ms']:.2f}x; extractor alone (eager) "
                         f"{ms['extract_ms']:.2f} ms = {ms['extract_ms'] / ms['prior_ms']:.0%} of the prior step; peak "
                         f"{ms['plain_mib']:.0f} / {ms['prior_mib']:.0f} MiB"])
    return rows


def fused_rows(log: str, part: str) -> list[list[str]]:
    """One row per K of benchmarks/fused_throughput.py's table (plain and prior side by side)."""
    head = re.search(r"^# fused throughput on .*?: (\S+) x(\d+), batch (\d+) per member, LR (\d+)x", log, re.M)
    preset = f"{head[1]} b{head[3]} {head[4]}²" if head else "?"
    by_k: dict[int, dict[str, list[str]]] = {}
    for line in log.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0] in ("plain", "prior") and cells[1].isdigit():
            by_k.setdefault(int(cells[1]), {})[cells[0]] = cells
    rows = []
    for k, modes in sorted(by_k.items()):
        def cell(mode: str) -> str:
            c = modes.get(mode)
            return f"{c[3]} model-steps/s ({c[5]} seq, {c[6]} one trial)" if c else "-"
        peaks = " / ".join(modes[m][7] for m in ("plain", "prior") if m in modes and len(modes[m]) > 7)
        rows.append([part, f"{preset} K={k}", cell("plain"), cell("prior"),
                     f"fused peak {peaks} MiB" if peaks else ""])
    return rows


def sweep_rows(uri: str, wall: str) -> list[list[str]]:
    """Per-trial steps/s (plain vs prior rows), aggregate steps/s and start-up from the sweep's MLflow trial runs."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments()
            for r in client.search_runs([e.experiment_id], "tags.`srprior.role` = 'trial'")]
    runs = [r for r in runs if "system/train_steps_s" in r.data.metrics]
    if not runs:
        return [[PARTS["sweep"], "-", "-", "-", f"no finished trial run in {uri}"]]
    rate, first, last = {}, [], []
    for r in runs:
        steps = int(r.data.params["steps"])
        rate[r.info.run_id] = steps / r.data.metrics["system/train_steps_s"]
        stamps = [m.timestamp for m in client.get_metric_history(r.info.run_id, "train/loss")]
        first.append(min(stamps, default=0) / 1e3)
        last.append(max(stamps, default=0) / 1e3)
    total_steps = sum(int(r.data.params["steps"]) for r in runs)
    by_prior = {flag: [rate[r.info.run_id] for r in runs if (float(r.data.params.get("lambda_ap", 0)) > 0) == flag]
                for flag in (False, True)}
    startup = [r.data.metrics.get("system/to_first_step_s", float("nan")) for r in runs]
    trial_wall = [r.data.metrics.get("system/trial_wall_s", float("nan")) for r in runs]
    p = runs[0].data.params

    def mean(xs: list[float]) -> str:
        return f"{statistics.fmean(xs):.1f} steps/s per trial" if xs else "-"

    return [[PARTS["sweep"], f"{len(runs)} trials, {p.get('preset')} b{p.get('batch')} {p.get('patch')}², "
             f"{p.get('steps')} steps", mean(by_prior[False]), mean(by_prior[True]),
             f"aggregate {total_steps / (max(last) - min(first)):.1f} steps/s (all trials' steps / first to last "
             f"logged train/loss); to first step mean {statistics.fmean(startup):.1f} s (max {max(startup):.1f}); "
             f"trial wall mean {statistics.fmean(trial_wall):.1f} s; sweep wall {wall}"]]


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    uri = argv[1]
    parts = {}
    for line in (out / "parts.txt").read_text().splitlines() if (out / "parts.txt").exists() else []:
        name, rc, secs = line.split()
        parts[name] = (int(rc), secs)
    rows = [["part", "case", "plain", "prior", "notes"], ["---"] * 5]
    for name, label in PARTS.items():
        log = out / f"{name}.log"
        rc, secs = parts.get(name, (None, "?"))
        try:
            text = log.read_text() if log.exists() else ""
            got = (step_cost_rows(text) if name == "step_cost" else sweep_rows(uri, secs) if name == "sweep"
                   else fused_rows(text, label))
        except Exception as exc:  # a half-written log or an unreadable store: say so in the table, keep the rest
            got = [[label, "-", "-", "-", f"could not read: {type(exc).__name__}: {exc}"]]
        rows += got
        if rc != 0:
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else ["no log"]
            status = "not run" if rc is None else "timed out" if rc == 124 else f"failed (exit {rc})"
            rows.append([label, status, "-", "-", f"after {secs}; last line: {tail[0][:200] if tail else ''}"])
    header = (out / "header.txt").read_text() if (out / "header.txt").exists() else ""
    table = header + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"
    print(table, end="")
    (out / "gpu_suite.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
