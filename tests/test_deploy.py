"""deploy/: both cluster-launcher variants pass Ray's own schema checks (the calls `ray up` makes) and carry
what a sweep needs on a cluster, at constraints.txt's versions; sweep.py stays uploadable on its own (`ray submit`
sends only that file)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

ray_util = pytest.importorskip("ray.autoscaler._private.util")

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("cluster.yaml", "cluster-local.yaml")


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / "deploy" / name).read_text())


@pytest.mark.parametrize("name", VARIANTS)
def test_cluster_config_passes_rays_validation(name):
    config = ray_util.prepare_config(copy.deepcopy(_load(name)))
    ray_util.validate_config(config)
    assert config["provider"]["type"] == ("aws" if name == "cluster.yaml" else "local")


def test_validation_is_real_a_typo_is_rejected():
    config = _load("cluster.yaml")
    config["setup_comands"] = config.pop("setup_commands")
    with pytest.raises(Exception, match="setup_comands"):
        ray_util.validate_config(ray_util.prepare_config(config))


@pytest.mark.parametrize("name", VARIANTS)
def test_cluster_ships_the_package_and_runs_mlflow_on_the_head(name):
    config = _load(name)
    (remote,) = [dst for dst, src in config["file_mounts"].items() if src == "."]
    assert config["setup_commands"] == [f"pip install -q -c {remote}/constraints.txt -e {remote}"]  # the lock
    head = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head and "0.0.0.0" not in head  # dashboard and MLflow off the public interfaces
    # the store's server (srprior ui: migrated under its lock, one worker, this Host header allowed) on the
    # head's private address
    assert "ensure_store('sqlite:///' + os.path.expanduser('~/srprior-outputs/mlflow.db'))" in head  # made once
    assert "srprior ui --output-dir ~/srprior-outputs --host $(hostname -I | awk '{print $1}') --port 5000" in head
    assert any("MLFLOW_TRACKING_URI=http://" in c for c in config["head_setup_commands"])
    assert any("SRPRIOR_OUTPUT=$HOME/srprior-outputs" in c for c in config["head_setup_commands"])
    assert any("$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"])
    assert "**/.git" in config["rsync_exclude"]


def test_nodes_run_the_locks_ray_and_python_and_the_image_bakes_the_lock():
    ray_pin = next(line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("ray=="))
    image = _load("cluster.yaml")["docker"]["image"]
    assert image == f"rayproject/ray:{ray_pin.removeprefix('ray==')}-py311-gpu"
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"\nFROM {image}\n" in dockerfile and "pip install --no-cache-dir -r /tmp/constraints.txt" in dockerfile
    assert (REPO / "deploy" / "Dockerfile.dockerignore").read_text().split() == ["*", "!constraints.txt"]


def test_sweep_script_imports_only_the_installed_package():
    tree = ast.parse((REPO / "sweep.py").read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules == {"sys", "srprior.commands.sweep"}


def test_the_budget_table_in_deploy_readme_matches_the_budgets():
    """deploy/README.md's budget table says what trainers/budgets.py trains: one row per budget, its steps,
    batch × LR patch and seeds per row."""
    from srprior.trainers.budgets import BUDGETS

    text = (REPO / "deploy" / "README.md").read_text()
    rows = {r.split("|")[1].strip(" `"): [c.strip() for c in r.split("|")[2:-1]]
            for r in text.splitlines() if r.startswith("| `")}
    for name, budget in BUDGETS.items():
        assert name in rows, f"deploy/README.md's budget table has no row for {name!r}"
        what, steps, shape, evaluation = rows[name]
        science = budget.science
        assert steps.split(" (")[0] == f"{science['steps']:,}", (name, steps)
        assert shape.startswith(f"{science['batch']} × {science['lr_patch']}²"), (name, shape)
        if budget.seeds is not None:
            assert evaluation.startswith(f"{budget.seeds} seeds per row"), (name, evaluation)
