"""The layers of the house, bottom to top: a module imports only its own layer or lower ones, and the import graph
of platform/srprior, trainers/ and search_spaces/ (imports inside functions included) has no cycle — neither
between modules nor between folders (a package is one node: no folder imports a folder that imports it back).

This test is the documentation of the layers (README "Architecture" shows the same table):

  1 base           contracts, errors, schema_fields, stats, sequential, metrics, progress, checksum
  2 science        archs, data, method, evaluate          (models, images, the prior, PSNR/SSIM)
  3 schema         schema                                  (the typed trial config)
  4 specs          search_spaces                           (the tables and their rows)
  5 infra          locks, store, tracking, credentials, preflight
  6 trainers       trainers                                (Ray Train/Tune trainables, budgets, checkpoints)
  7 plan           plan, cost, evalcost, designs, options  (what a sweep trains and what it costs)
  8 results        report, hardcases                       (runs read back, statistics, renderers, plots)
  9 orchestration  sweep, watchdog, stopping, exposure     (plan → Ray/Tune → report)
 10 commands       commands, cli                           (thin argparse layers over the library)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"srprior": ROOT / "platform" / "srprior", "srprior.trainers": ROOT / "trainers",
           "srprior.search_spaces": ROOT / "search_spaces"}

LAYERS = [
    ("base", {"contracts", "errors", "schema_fields", "stats", "sequential", "metrics", "progress", "checksum"}),
    ("science", {"archs", "data", "method", "evaluate"}),
    ("schema", {"schema"}),
    ("specs", {"search_spaces"}),
    ("infra", {"locks", "store", "tracking", "credentials", "preflight"}),
    ("trainers", {"trainers"}),
    ("plan", {"plan", "cost", "evalcost", "designs", "options"}),
    ("results", {"report", "hardcases"}),
    ("orchestration", {"sweep", "watchdog", "stopping", "exposure"}),
    ("commands", {"commands", "cli"}),
]


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _layer(module: str) -> int:
    """The layer of `srprior.X...` (X's top-level name decides); the package `srprior` itself is the base."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "contracts"
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: not in any layer; add `{top}` to LAYERS in tests/test_layers.py and README")


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its body (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join(module.split(".")[:-node.level] + [node.module])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_only_go_down():
    upward = sorted(f"{module} (layer {_layer(module) + 1} {LAYERS[_layer(module)][0]}) imports {target} "
                    f"(layer {_layer(target) + 1} {LAYERS[_layer(target)][0]})"
                    for module, targets in graph().items() for target in targets
                    if _layer(target) > _layer(module))
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def _cycles(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" → ".join(stack[stack.index(target):] + [node, target]))
            elif target not in state:
                visit(target, stack + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycle():
    # a package's __init__ importing its own submodules is not a cycle of the house: drop parent → child edges
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph().items()}
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _folder(module: str) -> str:
    """The node of `module` in the folder graph: its top-level package (srprior.report, srprior.trainers, ...),
    or the module itself when it is a single file under srprior/."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or module in PACKAGES else module


PACKAGES = {f"srprior.{p.name}" for p in SOURCES["srprior"].iterdir() if (p / "__init__.py").is_file()} | {
    "srprior.trainers", "srprior.search_spaces"}


def folder_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, targets in edges.items():
        node = _folder(module)
        out.setdefault(node, set()).update(f for f in map(_folder, targets) if f != node)
    return out


def test_no_folder_imports_a_folder_that_imports_it_back():
    cycles = _cycles(folder_graph(graph()))
    assert not cycles, "folder-level import cycles (a folder is one node):\n" + "\n".join(cycles)


def test_the_folder_graph_sees_a_loop_between_folders():
    """report/ → plots → report/ was such a loop (issue 25); the walk must find one."""
    edges = {"srprior.report.write": {"srprior.plots"}, "srprior.plots": {"srprior.report.model"},
             "srprior.report.model": set()}
    assert _cycles(folder_graph(edges)) == ["srprior.plots → srprior.report → srprior.plots"]


def test_the_walker_sees_function_level_imports(tmp_path):
    """The walk must see an import inside a function, or the test could not fail where it matters."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from srprior.sweep import main\n    import srprior.plots\n")
    assert _imports(path, "srprior.x", {"srprior.sweep", "srprior.plots", "srprior"}) == {"srprior.sweep",
                                                                                          "srprior.plots"}


def test_modules_and_functions_stay_small():
    """House rule: modules <= 400 lines, functions <= 60, in platform/, trainers/, search_spaces/ and benchmarks/."""
    too_big = []
    for path in [*(p for folder in SOURCES.values() for p in sorted(folder.rglob("*.py"))),
                 *sorted((ROOT / "benchmarks").rglob("*.py"))]:
        text = path.read_text()
        if text.count("\n") > 400:
            too_big.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                               f"{node.end_lineno - node.lineno + 1} lines")
    assert not too_big, "\n".join(too_big)


TRAINING_PARTS = {"TrainStep", "FusedTrainStep", "PatchSampler"}
# Where they may be built outside trainers/: their own modules, and the cost model, which runs one step on the meta
# device to count its FLOPs (no data, no weights: never training).
TRAINING_PARTS_HOMES = {"srprior.method", "srprior.data", "srprior.cost"}


def test_only_trainers_build_a_training_step_or_sampler():
    """One loop: outside trainers/ nothing assembles its own training (issue 25: `srprior smoke` did)."""
    found = []
    for module, path in _modules().items():
        if module.startswith("srprior.trainers") or any(module == h or module.startswith(h + ".")
                                                        for h in TRAINING_PARTS_HOMES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in TRAINING_PARTS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} builds {name}")
    assert not found, "\n".join(found)


def test_the_readme_shows_this_table():
    """README "Architecture" prints the layers; it must name the same modules in the same order."""
    import re

    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) (\w+) \| (.*) \|$", text, flags=re.M)
    readme = [(name, set(re.findall(r"(?:^|, )`(\w+)`", mods))) for _, name, mods in rows]
    assert readme == [(name, names) for name, names in LAYERS]
