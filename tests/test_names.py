"""One name, one meaning: metric and tag names are written through srprior.contracts, and a module-level constant
name means the same value wherever it is defined (issue 25: STATE_FILE was state.pt in one module and
srprior-sweep.json in another; BENCHMARKS metric suffixes in one and folder names in another)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = (ROOT / "platform" / "srprior", ROOT / "trainers", ROOT / "search_spaces")
CONTRACTS = ROOT / "platform" / "srprior" / "contracts.py"
# metric names under their MLflow prefixes, srprior's run tags and experiments, and the Tune result keys
NAME = re.compile(r"^((train|val|system|best|final|bicubic)/\w*|srprior\.[a-z_]+|srprior/\w*|members_(failed|reused))$")


def _sources() -> list[Path]:
    return [p for folder in FOLDERS for p in sorted(folder.rglob("*.py"))]


def _literals(path: Path) -> list[tuple[int, str]]:
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value)]


def test_metric_and_tag_names_are_written_through_contracts():
    found = [f"{path.relative_to(ROOT)}:{line} {value!r}" for path in _sources() if path != CONTRACTS
             for line, value in _literals(path)]
    assert not found, "metric/tag names outside srprior.contracts:\n" + "\n".join(found)


def test_the_name_check_sees_a_literal(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('logger.add(step, {"train/l1": 1.0, "system/trial_wall_s": 2.0})\nTAG = "srprior.role"\n')
    assert sorted(v for _, v in _literals(path)) == ["srprior.role", "system/trial_wall_s", "train/l1"]


def _constants(path: Path) -> dict[str, tuple[bool, str]]:
    """Module-level UPPER_CASE names -> (a name literal: a string or a tuple of strings, its value or source)."""
    out: dict[str, tuple[bool, str]] = {}
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) and node.value is not None else None)
        if isinstance(target, ast.Name) and target.id.isupper() and len(target.id) > 1:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                out[target.id] = (False, ast.unparse(node.value))
                continue
            names = isinstance(value, str) or isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            out[target.id] = (names, repr(value))
    return out


def test_a_constant_name_means_one_value():
    """A name bound to a string (a file, a tag) or a tuple of them in one module means that value in every module
    that binds it (per-module data such as each table's TABLE or each architecture's PRESETS is not a name)."""
    seen: dict[str, dict[str, list[str]]] = {}
    literal: set[str] = set()
    for path in _sources():
        for name, (names, value) in _constants(path).items():
            seen.setdefault(name, {}).setdefault(value, []).append(str(path.relative_to(ROOT)))
            if names:
                literal.add(name)
    clashes = [f"{name}: " + "; ".join(f"{value} in {', '.join(files)}" for value, files in values.items())
               for name, values in sorted(seen.items()) if len(values) > 1 and name in literal]
    assert not clashes, "one name, several values:\n" + "\n".join(clashes)
