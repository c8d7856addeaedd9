"""The GPU suite's one table: reads what benchmarks/gpu_suite.sh left in its output folder and the sweep's MLflow
store, prints Markdown (| part | case | plain | prior | notes |) and writes it to <out>/gpu_suite.md; and the
efficiency data of the plan's cost model (srprior.cost): the measured step times as TFLOP/s per precision,
preset and mode, merged into the shipped platform/srprior/efficiency.json and written to <out>/efficiency.json
and (when run from a checkout) back to platform/srprior/efficiency.json, marked as measured by the suite.

    python benchmarks/gpu_suite_table.py OUT MLFLOW_URI

OUT holds header.txt, parts.txt (name, exit status, seconds per part) and one log per part (PARTS); MLFLOW_URI
is the sweep's store (trial runs carry system/train_steps_s, system/trial_wall_s, system/to_first_step_s and the
train/loss curve, trainers/loop.py).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

PARTS = {"step_cost": "step cost", "edsr_b": "step cost EDSR-B", "step_cost_ablations": "step cost EDSR-T-BN/-15",
         "fused": "fused", "fused_rcan": "fused",
         "fused_rnan": "fused", "fused_graph": "fused + CUDA graph", "sweep": "sweep"}
STEP_COST_PARTS = ("step_cost", "edsr_b", "step_cost_ablations")  # step_cost.py logs: fp32 and bf16 entries
CHECKOUT_FILE = Path(__file__).resolve().parents[1] / "platform" / "srprior" / "efficiency.json"
# step_cost.py variant -> the efficiency table's precision key (srprior.cost.precision)
PRECISION = {"eager": "fp32", "tf32": "tf32", "bf16": "bf16", "channels-last": "fp32+channels-last",
             "cuda-graph": "fp32+graph", "bf16+cuda-graph": "bf16+graph"}


def step_cost_table(log: str) -> tuple[tuple[int, int, int], list[dict[str, str]]]:
    """((scale, batch, LR patch), one dict per row) of benchmarks/step_cost.py's output (`--variants` rows)."""
    head = re.search(r"^batch (\d+), LR (\d+)x\d+, x(\d+),", log, re.M)
    shape = (int(head[3]), int(head[1]), int(head[2])) if head else (2, 16, 48)
    rows, cols = [], None
    for line in log.splitlines():
        if line.startswith("device | preset"):
            cols = line.split(" | ")
        elif cols and len(cells := [c.strip() for c in line.split("|")]) == len(cols):
            rows.append({"variant": "eager", **dict(zip(cols, cells))})
    return shape, rows


def step_cost_rows(log: str, part: str = "step cost") -> list[list[str]]:
    """One row per (preset, variant) of benchmarks/step_cost.py's output."""
    rows = []
    for r in step_cost_table(log)[1]:
        ms = {k: float(r[k]) for k in ("plain_ms", "prior_ms", "extract_ms", "plain_mib", "prior_mib")}
        rows.append([part, f"{r['preset']} {r['variant']}", f"{ms['plain_ms']:.1f} ms", f"{ms['prior_ms']:.1f} ms",
                     f"prior/plain {ms['prior_ms'] / ms['plain_ms']:.2f}x; extractor alone (eager) "
                     f"{ms['extract_ms']:.2f} ms = {ms['extract_ms'] / ms['prior_ms']:.0%} of the prior step; peak "
                     f"{ms['plain_mib']:.0f} / {ms['prior_mib']:.0f} MiB"])
    return rows


def fused_table(log: str) -> tuple[re.Match | None, dict[int, dict[str, list[str]]]]:
    """(header match: preset, scale, batch, patch, cuda_graph; K -> mode -> cells) of benchmarks/fused_throughput.py."""
    head = re.search(r"^# fused throughput on .*?: (\S+) x(\d+), batch (\d+) per member, LR (\d+)x.*"
                     r"cuda_graph=(\w+)", log, re.M)
    by_k: dict[int, dict[str, list[str]]] = {}
    for line in log.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0] in ("plain", "prior") and cells[1].isdigit():
            by_k.setdefault(int(cells[1]), {})[cells[0]] = cells
    return head, by_k


def fused_rows(log: str, part: str) -> list[list[str]]:
    """One row per K of benchmarks/fused_throughput.py's table (plain and prior side by side)."""
    head, by_k = fused_table(log)
    preset = f"{head[1]} b{head[3]} {head[4]}²" if head else "?"
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

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():  # reading creates none
        return [[PARTS["sweep"], "-", "-", "-", f"no MLflow store at {uri}"]]
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


def efficiency(out: Path, base: dict, stamp: str) -> dict:
    """`base` (the efficiency data) with every step time the suite measured as a measured entry: step cost per
    variant (precision key PRECISION), EDSR-B, and fused groups per model-step ('<precision>+fused<K>')."""
    from srprior.cost import entry

    data = json.loads(json.dumps(base))
    table = data["devices"]["gpu"]

    def put(prec: str, preset: str, mode: str, ms: float, shape: tuple[int, int, int], how: str) -> None:
        table.setdefault(prec, {}).setdefault(preset, {})[mode] = entry(preset, mode, ms, f"{stamp}, {how}", shape)

    found = 0
    for name in STEP_COST_PARTS:
        log = out / f"{name}.log"
        shape, rows = step_cost_table(log.read_text() if log.exists() else "")
        for r in rows:
            for mode in ("plain", "prior"):
                put(PRECISION[r["variant"]], r["preset"], mode, float(r[f"{mode}_ms"]), shape, r["variant"])
                found += 1
    for name in ("fused", "fused_rcan", "fused_rnan", "fused_graph"):
        log = out / f"{name}.log"
        head, by_k = fused_table(log.read_text() if log.exists() else "")
        for k, modes in by_k.items() if head else ():
            for mode, cells in modes.items():
                prec = ("fp32+graph" if head[5] == "True" else "fp32") + f"+fused{k}"
                put(prec, head[1], mode, 1e3 / float(cells[3]), (int(head[2]), int(head[3]), int(head[4])),
                    f"fused K={k}, per model-step")
                found += 1
    if found:
        data["gpu_suite"] = stamp
    return data


def write_efficiency(out: Path, header: str) -> str:
    """Write <out>/efficiency.json (and the checkout's file when there is one); a line for the table's foot."""
    from srprior.cost import EFFICIENCY_FILE

    base_file = CHECKOUT_FILE if CHECKOUT_FILE.exists() else EFFICIENCY_FILE
    stamp = re.sub(r"^# srprior GPU suite, |; sweep:.*$", "", header.strip()) or "GPU suite"
    data = efficiency(out, json.loads(base_file.read_text()), stamp)
    if data.get("gpu_suite") != stamp:
        return "efficiency data: no step time measured, nothing written"
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    targets = [out / "efficiency.json"] + ([CHECKOUT_FILE] if CHECKOUT_FILE.exists() else [])
    for path in targets:
        path.write_text(text)
    return f"efficiency data written: {', '.join(map(str, targets))} (commit the checkout's file)"


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
            got = (step_cost_rows(text, label) if name in STEP_COST_PARTS else fused_rows(text, label)
                   if name != "sweep" else sweep_rows(uri, secs) if rc is not None else [])
        except Exception as exc:  # a half-written log or an unreadable store: say so in the table, keep the rest
            got = [[label, "-", "-", "-", f"could not read: {type(exc).__name__}: {exc}"]]
        rows += got
        if rc != 0:
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else ["no log"]
            status = "not run" if rc is None else "timed out" if rc == 124 else f"failed (exit {rc})"
            last = tail[0][:200] if tail else ""
            rows.append([label, f"{status} ({name})", "-", "-", f"after {secs}; last line: {last}"])
    header = (out / "header.txt").read_text() if (out / "header.txt").exists() else ""
    table = header + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"
    table += "\n" + write_efficiency(out, header) + "\n"
    print(table, end="")
    (out / "gpu_suite.md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
