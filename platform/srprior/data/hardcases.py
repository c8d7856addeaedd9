"""Where trained checkpoints lie and which weights a checkpoint member carries: plain files and dicts, read by
srprior.hardcases (the HardCases-R rebuild) and srprior.trainers.backfill.

(HardCases-R itself is srprior.hardcases, a results-layer module: it loads trained models. These two helpers
stay here because trainers/backfill.py imports them from this path; they move to srprior.trainers.checkpoints
with its member_states, and this module goes, once trainers import them from there.)
"""

from __future__ import annotations

from pathlib import Path


def find_checkpoints(output_dir: str | Path) -> list[Path]:
    """The newest ``state.pt`` of every Ray Train run under ``<output_dir>/ray`` (checkpoint_N with the highest N)."""
    newest: dict[Path, Path] = {}
    for path in sorted(Path(output_dir).glob("ray/**/checkpoint_*/state.pt")):
        newest[path.parent.parent] = path  # sorted: checkpoint_000010 after checkpoint_000009
    return sorted(newest.values())


def _member_weights(member: dict, weights: str) -> dict:
    """The best-validation weights (model selection, thesis §4.2) when asked and kept, else the last step's."""
    best = member.get("best") or {}
    return best["model"] if weights == "best" and best.get("model") is not None else member["model"]
