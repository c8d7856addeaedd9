"""The source layout must keep the stdlib `platform` module importable (torch, Ray and MLflow import it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout.strip()


def test_platform_dir_is_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_stdlib_platform_wins_with_repo_root_first_on_sys_path():
    out = _run("import platform, sysconfig; print(platform.__file__); print(sysconfig.get_paths()['stdlib'])")
    module_file, stdlib = out.splitlines()
    assert Path(module_file).parent == Path(stdlib)
    assert _run("import platform; print(platform.python_version())") == ".".join(map(str, sys.version_info[:3]))


def test_mapped_packages_resolve_to_their_top_level_folders():
    out = _run("import srprior, srprior.trainers, srprior.search_spaces as s; "
               "print(srprior.__file__); print(srprior.trainers.__file__); print(s.__file__)")
    core, trainers, spaces = (Path(p) for p in out.splitlines())
    assert core == ROOT / "platform" / "srprior" / "__init__.py"
    assert trainers == ROOT / "trainers" / "__init__.py"
    assert spaces == ROOT / "search_spaces" / "__init__.py"
