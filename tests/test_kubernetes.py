"""deploy/kubernetes/: the KubeRay RayJob (and the RayCluster its rayClusterSpec implies) checked against the
KubeRay v1.7.0 CRDs' OpenAPI schemas in ../shared/kubernetes/ (no cluster needed), as an API server with
structural-schema pruning would: an unknown (e.g. misspelt) field is an error, not silently dropped. CEL rules
(x-kubernetes-validations) are not evaluated."""

from __future__ import annotations

import copy
import functools
import shlex
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO.parent / "shared" / "kubernetes" / "kuberay-v1.7.0"  # CI lays shared/ beside the clone
DEPLOY = REPO / "deploy" / "kubernetes"
OBJECT_META = {"type": "object", "additionalProperties": False, "required": ["name"],
               "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                              "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                              "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}


def _structural(node):
    """The schema with Kubernetes' pruning made strict: an object without additionalProperties and without
    x-kubernetes-preserve-unknown-fields admits only its declared properties."""
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _structural(v) for k, v in node.items()}
    if out.get("type") == "object" and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _validator(crd_file: str, kind: str):
    if not CRDS.is_dir():
        pytest.skip(f"{CRDS} is absent (CI lays shared/ beside the clone)")
    crd = yaml.load((CRDS / crd_file).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META  # the API server checks ObjectMeta itself
    schema = _structural(schema)
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return jsonschema.Draft7Validator(schema)


def _manifests() -> dict[str, dict]:
    docs = [d for path in sorted(DEPLOY.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    return {d["kind"]: d for d in docs}


def _errors(validator, doc) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


def test_the_rayjob_and_its_raycluster_validate_against_the_kuberay_crds():
    manifests = _manifests()
    job = manifests["RayJob"]
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert _errors(_validator("ray.io_rayjobs.yaml", "RayJob"), job) == []
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": job["metadata"]["name"]},
               "spec": job["spec"]["rayClusterSpec"]}
    assert _errors(_validator("ray.io_rayclusters.yaml", "RayCluster"), cluster) == []


@pytest.mark.parametrize("path, misspelt", [
    (["spec"], "shutdownAfterJobFinished"),
    (["spec", "rayClusterSpec", "workerGroupSpecs", 0, "template", "spec", "containers", 0], "resource"),
    (["spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "volumes", 0], "persistentVolumeClam"),
])
def test_a_misspelt_field_fails_the_same_validation(path, misspelt):
    """Each manifest field renamed by one letter: the validation that passes above names it."""
    job = copy.deepcopy(_manifests()["RayJob"])
    node = job
    for key in path:
        node = node[key]
    right = min((k for k in node if k[:4] == misspelt[:4]), key=lambda k: abs(len(k) - len(misspelt)))
    node[misspelt] = node.pop(right)
    errors = _errors(_validator("ray.io_rayjobs.yaml", "RayJob"), job)
    assert any(f"'{misspelt}' was unexpected" in e for e in errors), errors


def test_the_rayjob_runs_the_sweep_on_gpu_workers_with_a_shared_volume_and_the_tracking_secret():
    """What the schema cannot say: the entrypoint is a valid `python sweep.py` command writing to the volume
    every pod mounts, the workers request GPUs, the secret lands where srprior.credentials reads it, and the
    cluster goes away after the sweep."""
    from srprior.commands.sweep import add_arguments
    from srprior.credentials import FILE
    from srprior.errors import Parser

    manifests = _manifests()
    job, claim = manifests["RayJob"], manifests["PersistentVolumeClaim"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and 0 < spec["ttlSecondsAfterFinished"] <= 3600
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "sweep.py"]
    parser = Parser(prog="sweep.py")
    add_arguments(parser)
    opts = parser.parse_args(argv[2:])
    assert opts.shared_storage and opts.storage.startswith(opts.output_dir)
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    workers = [g["template"]["spec"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for pod in [head, *workers]:
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts[opts.output_dir]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert container["image"] == head["containers"][0]["image"]
    for pod in workers:
        limits = pod["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    secret_mount = next(m for m in head["containers"][0]["volumeMounts"] if m.get("subPath") == FILE)
    assert secret_mount["mountPath"] == f"{opts.output_dir}/{FILE}"
    assert {v["name"]: v for v in head["volumes"]}[secret_mount["name"]]["secret"]["secretName"]
