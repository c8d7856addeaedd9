"""`srprior sweep --until-decided`: a table sweep run as the group-sequential design of srprior.sequential.

Each look is an ordinary sweep (srprior.sweep.run) named <sweep id>-look-<k>, with more seeds for some rows
(SweepOptions.row_seeds): trials already FINISHED are reused by their key, so a look trains only the new seeds,
and resume and fused groups work as in any sweep. The pilot gives every row the design's first seed count;
after each look the claims are replayed from the store (srprior.sequential.decide: deterministic, so rerunning
the same command resumes at the look where it stopped) and only the rows of claims still undecided get the next
look's seeds (a row shared by claims serves all); rows of no claim keep the pilot. The decisions (per claim: the
look, why, the paired test) are printed, written beside the reports and logged to the last look's parent runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from srprior import contracts, preflight, tracking
from srprior.designs import claim_cap, design_of, planned_claims
from srprior.options import SweepOptions
from srprior.plan import PlanError, default_sweep_id, make_plan
from srprior.search_spaces.claims import verdict_word
from srprior.sequential import WHY, Decision, Design, decide
from srprior.sweep.run import STATE_FILE, _storage, run_sweep

ARTIFACT, MARKDOWN, TAG = contracts.SEQUENTIAL_JSON, contracts.SEQUENTIAL_MD, contracts.SEQUENTIAL


def run_sequential(opts: SweepOptions) -> int:
    """The looks of the design, each a sweep; 0 when every trial finished (claims may stay undecided), 1 when a
    look stopped (rerun to resume) or a trial FAILED (the design goes on without its pair)."""
    if opts.plan or not opts.until_decided:
        return run_sweep(opts)
    if opts.search or opts.seeds is not None or opts.resume or opts.retrain:
        raise PlanError("--until-decided runs a table's looks from its design: drop --search, --seeds, --resume "
                        "and --retrain (rerun the same command to resume it)")
    base = preflight.check_name("--name", opts.name or default_sweep_id(opts))
    plan = make_plan(opts)
    design, caps = design_of(plan.budget)
    output = tracking.output_dir(opts.output_dir)
    uri = tracking.user_tracking_uri() or tracking.default_tracking_uri(output)
    print(f"Sequential design ({plan.budget}): {design.text()}" +
          (f"; caps {', '.join(f'{p} {n}' for p, n in caps.items())}" if caps else "") +
          f"\nsweeps {base}-look-1 … (the same command with --name {base} resumes)", flush=True)
    row_seeds: dict[tuple[str, str], int] = {}
    decisions: dict[str, list[tuple[Any, Decision]]] = {}
    worst = 0
    for k, n in enumerate(design.looks):
        name = f"{base}-look-{k + 1}"
        look = opts.replace(name=name, seeds=design.pilot, until_decided=False,
                            row_seeds=tuple(f"{t}:{r}={s}" for (t, r), s in sorted(row_seeds.items())))
        if (Path(_storage(opts.storage, output)) / name / STATE_FILE).is_file():
            look = look.replace(resume=name)
        print(f"look {k + 1} of {len(design.looks)}: sweep {name}", flush=True)
        code = run_sweep(look)
        plan = make_plan(look)
        if code and not _ended(uri, plan):
            print(f"look {k + 1} did not finish; rerun the same command (with --name {base}) to resume it")
            return code
        worst = max(worst, code)
        decisions = {t: _decisions(plan, t, uri, design, caps, k) for t in plan.names}
        print("\n".join(_lines(decisions, k + 1)), flush=True)
        wanted = {}  # (table, row) -> the next look's seeds, at most the cap of a claim still looking
        for t, found in decisions.items():
            for c, d in found:
                for row in (c.row_a, c.row_b) if d.active else ():
                    n_next = min(design.looks[k + 1], claim_cap(c, design, caps)) if k + 1 < len(design.looks) else 0
                    wanted[(t, row)] = max(wanted.get((t, row), 0), n_next)
        if not any(wanted.values()):
            break
        row_seeds.update({key: max(n, row_seeds.get(key, 0)) for key, n in wanted.items() if n})
    _log(uri, name, decisions, output / "reports" / base)
    return worst


def _ended(uri: str, plan: Any) -> bool:
    """Every trial of the look ended FINISHED or FAILED (a diverged trial is not trained again: its pair is
    missing from the claim's test, and the design goes on)."""
    runs = tracking.runs_by_key(uri, {t.key for t in plan.trials})
    return all(t.key in runs and runs[t.key].info.status in ("FINISHED", "FAILED") for t in plan.trials)


def _decisions(plan: Any, table: str, uri: str, design: Design, caps: dict[str, int],
               k: int) -> list[tuple[Any, Decision]]:
    """Every claim of `table` tested on our runs, replayed over looks 0..k (srprior.sequential.decide)."""
    from srprior.report.model import claim_inputs, collect
    from srprior.search_spaces import get_table

    spec = get_table(table)
    found_values, counts = collect(spec, uri, plan.cells[table])
    values, setting, _, _ = claim_inputs(found_values, counts["ran"])
    claims = [c for c in planned_claims(plan, table)  # a metric no run logged: not tested, not looked at
              if any(c.metric in m for m in values.get(c.row_a, {}).values())]
    diffs = []
    for c in claims:
        own = [min(n, claim_cap(c, design, caps)) for n in design.looks[:k + 1]]
        order = {row: [s for _, s, _ in spec.cells(seeds=max(own), rows=[row])] for row in (c.row_a, c.row_b)}
        per_look = []
        for n in own:
            seeds = [s for s in order[c.row_a][:n] if s in order[c.row_b][:n]
                     and all(c.metric in values.get(r, {}).get(s, {}) for r in (c.row_a, c.row_b))]
            per_look.append(np.array([values[c.row_b][s][c.metric] - values[c.row_a][s][c.metric] for s in seeds]))
        diffs.append(per_look)
    thesis = [c.thesis_effect for c in claims]
    found = decide(design, [claim_cap(c, design, caps) for c in claims], [c.expected_sign for c in claims],
                   thesis, diffs)
    # the thesis's words only in its setting; a proxy's verdict says "same sign" / "opposite sign" (issue 23)
    proxies = [setting.proxy(c) for c in claims]
    return [(c, replace(d, verdict=verdict_word(d.verdict, proxy), proxy=proxy))
            for c, d, proxy in zip(claims, found, proxies)]


def _lines(decisions: dict[str, list[tuple[Any, Decision]]], look: int) -> list[str]:
    out = [f"claims after look {look} (paired t test; group-sequential Holm over each table's claims):"]
    for table, found in decisions.items():
        out += [f"  {table} §{c.section} {c.row_b} vs {c.row_a} {c.metric}{'↑' if c.expected_sign > 0 else '↓'}: "
                f"{d.text()}" for c, d in found]
    return out


def _markdown(decisions: dict[str, list[tuple[Any, Decision]]]) -> str:
    """Per claim: its verdict, the look that decided it and why, and the paired t test behind it."""
    head = ["§", "Claim", "b vs a", "Metric", "Verdict", "Look", "Why", "Test", "Pairs", "Effect", "p", "Boundary"]
    rows = [[c.section, c.text.replace("|", "/"), f"`{c.row_b}` vs `{c.row_a}`", c.metric,
             f"**{d.verdict}**" + (f" (proxy: {d.proxy})" if d.proxy else ""), str(d.look or "—"),
             WHY.get(d.reason or "", "still looking"), "paired t", str(d.n), f"{d.effect:+.4g}", f"{d.p:.3g}",
             f"{d.threshold:.3g}"] for found in decisions.values() for c, d in found]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]
    return "# Sequential design: decisions per claim\n\n" + "\n".join(lines) + "\n"


def _log(uri: str, sweep_id: str, decisions: dict[str, list[tuple[Any, Decision]]], folder: Path) -> None:
    """The decisions as sequential.json beside the reports, and as the tag srprior.sequential (JSON) on the last
    look's parent runs (a tag: the store's database holds it, with or without the sweep's artifact server)."""
    data = {table: [{"claim": c.key, "section": c.section, "verdict": d.verdict, "look": d.look,
                     "why": d.reason or "still looking", "pairs": d.n, "effect": d.effect, "p": d.p,
                     "boundary": d.threshold, "test": "paired t", "proxy": d.proxy} for c, d in found]
            for table, found in decisions.items()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ARTIFACT).write_text(json.dumps(data, indent=1, default=str) + "\n")
    (folder / MARKDOWN).write_text(_markdown(decisions))
    client = tracking.client(uri)
    exps = [e.experiment_id for e in contracts.srprior_experiments(client)]
    for run in contracts.search_all(client, exps, contracts.tag_filter({contracts.ROLE: "sweep",
                                                                        contracts.SWEEP_ID: sweep_id})):
        table = run.data.tags.get("table")
        if table in data:
            client.set_tag(run.info.run_id, TAG, json.dumps(data[table], default=str)[:8000])
    print(f"sequential decisions: {folder / MARKDOWN} ({ARTIFACT} beside it)")
