"""One version set: constraints.txt pins exact versions, pyproject.toml's ranges admit every pin, and the README's
two set-up commands (which .ci/run runs) install through it; tests/test_deploy.py checks deploy/."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            (spec,) = Requirement(line).specifier
            assert spec.operator == "==" and "+" not in spec.version, f"not an exact public pin: {line}"
            pins[canonicalize_name(Requirement(line).name)] = spec.version
    return pins


def test_pyproject_ranges_admit_every_pin():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for text in project["dependencies"] + sum(project["optional-dependencies"].values(), []):
        req = Requirement(text)
        version = pins.get(canonicalize_name(req.name))
        assert version is not None, f"{req.name} is in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(version, prereleases=True), f"{text} excludes the pinned {version}"
    # torch: pip's find-links serve the CPU build on CPU machines, PyPI's CUDA build on GPU nodes (same version)
    assert pins["torch"] == "2.13.0" and "torchvision" not in pins


def test_readme_set_up_commands_install_through_the_lock():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"<!-- (main|test)-command -->\n```bash\n(.+)\n```", readme)
    assert [kind for kind, _ in commands] == ["main", "test"]
    for _, command in commands:
        assert ".venv/bin/pip install -c constraints.txt -e " in command, command

