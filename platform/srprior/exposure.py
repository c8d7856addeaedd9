"""Where a sweep's services listen and who can reach them: local sweeps stay on loopback, clusters on the
cluster's private network.

Local sweeps. Ray binds its GCS, raylet, worker, agent and metrics ports to the node address, and on Linux it
resolves a loopback node address to the machine's network address (`ray_constants.ENABLE_RAY_CLUSTER`), so a
"local" sweep listened on every interface. `loopback_ray()` switches that resolution off for this process and
every Ray process it starts (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the switch Ray uses on macOS and Windows): all
of them then bind 127.0.0.1, the dashboard too; the MLflow server binds 127.0.0.1 anyway. Ray writes its token
`~/.ray/auth_token` with the umask (0644); it is a cluster credential: `tighten_token()` makes it 0600.

Clusters. The tracking server must be reachable from every node, so it binds the head's node address (the one
Ray uses between nodes), never 0.0.0.0, and allows that address as Host header (tracking.TrackingServer). It asks
for the cluster's credentials (srprior.credentials: MLflow's basic-auth app), but over plain HTTP, so that
address must not be globally routable either: `server_host` refuses a public one (run the cluster on a private
network, or point MLFLOW_TRACKING_URI at a server behind TLS). Trials on other nodes
write and resume checkpoints under --storage: `check_cluster_storage` refuses a folder of the head alone on a
multi-node cluster unless --shared-storage says it is mounted on every node (NFS).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from srprior.errors import UserError

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


class ExposureError(UserError, ValueError):
    """A cluster set-up that would expose the store or scatter checkpoints; the message says the fix."""


def loopback_ray() -> None:
    """Make the next local `ray.init` bind every Ray port to 127.0.0.1 (see the module docstring)."""
    from ray._private import ray_constants

    os.environ.update(LOOPBACK_ENV)  # inherited by the GCS, raylet, agents and workers this process starts
    ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray.init resolves this node's address


def tighten_token() -> None:
    """Ray's token file (created with the umask) readable by its owner only."""
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if token.is_file() and token.stat().st_uid == os.getuid():
        token.chmod(0o600)
        if token.parent == Path.home() / ".ray":
            token.parent.chmod(0o700)


def server_host(node_ip: str) -> str:
    """The address the tracking server binds on a cluster: the head's node address, if not globally routable."""
    if ipaddress.ip_address(node_ip).is_global:
        raise ExposureError(f"the head's node address {node_ip} is public: the MLflow server (basic auth over plain "
                         "HTTP) would be reachable from the internet; run the cluster on a private network, or set "
                         "MLFLOW_TRACKING_URI to an MLflow server behind TLS")
    return node_ip


def check_cluster_storage(storage: str, nodes: int, shared: bool) -> None:
    if nodes > 1 and "://" not in storage and not shared:
        raise ExposureError(f"--storage {storage} is a folder of this machine, but the cluster has {nodes} nodes: "
                         "trials elsewhere would write and resume their checkpoints on their own disks; use "
                         "--storage s3://BUCKET/PATH, or an NFS folder mounted on every node with --shared-storage")
