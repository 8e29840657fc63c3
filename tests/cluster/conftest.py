"""A real Kubernetes control plane on loopback for the cluster tier of the tests.

`kube_cluster` (session scope) runs etcd, kube-apiserver and kube-controller-manager, built
from the Go module proxy by tools/build-kube.sh into a cache outside the repository, on free
ports of 127.0.0.1 with a temporary directory. It yields a `KubeCluster`: point `KUBECONFIG` at
`.kubeconfig` (or use `.env()`) and any client, `pulumi up` included, talks to the cluster as an
admin (a static token in `system:masters`; authorization is RBAC).

No kubelet and no scheduler run: Pods are created by the controllers but never start, so
workloads given to Pulumi need the `pulumi.com/skipAwait: "true"` annotation. The
controller-manager runs every default controller, so namespace deletion and garbage
collection (foreground deletes) work as on a real cluster.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.node import controlplane, pki
from tools.node.procs import Processes

try:  # tests/ as a package, or pytest's rootdir-relative (prepend) imports
    from . import kube
except ImportError:
    import kube

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "build-kube.sh"
KUBE_VERSION = controlplane.KUBE_VERSION
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.0.0.0/24"


@dataclasses.dataclass(frozen=True)
class KubeCluster:
    kubeconfig: Path  # admin kubeconfig: KUBECONFIG=<this> is all a client needs
    server: str  # https://127.0.0.1:<port>
    token: str  # bearer token of the admin user (group system:masters)
    ca_file: Path  # CA that signed the API server's serving certificate
    context: str  # the kubeconfig's (current) context name
    workdir: Path  # certificates, logs (*.log) and etcd data
    bin_dir: Path

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """A copy of the environment with KUBECONFIG pointing at this cluster."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        """GET a path of the API server as the admin; returns (status, body)."""
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context()) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()


# --- binaries -------------------------------------------------------------------------------


def _bin_dir() -> Path:
    return controlplane.kube_bin_dir()


def _ensure_binaries() -> Path:
    bin_dir = _bin_dir()
    if all(os.access(bin_dir / name, os.X_OK) for name in BINARIES):
        return bin_dir
    # A cold build takes a quarter of an hour or more on two cores; its progress goes to the
    # terminal (stderr) only when pytest runs with -s, and to the skip reason if it fails.
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        pytest.skip(f"tools/build-kube.sh failed (exit {proc.returncode}):\n{tail}")
    lines = proc.stdout.strip().splitlines()
    bin_dir = Path(lines[-1]) if lines else bin_dir
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        pytest.skip(f"tools/build-kube.sh succeeded but {missing} are missing from {bin_dir}")
    return bin_dir


# --- the cluster ----------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_cluster(workdir: Path, bin_dir: Path) -> tuple[KubeCluster, Processes]:
    etcd_client, etcd_peer, api_port, kcm_port = _free_ports(4)
    layout = controlplane.Layout(
        address="127.0.0.1", bind_address="127.0.0.1", api_port=api_port,
        etcd_client_port=etcd_client, etcd_peer_port=etcd_peer, kcm_port=kcm_port,
        scheduler_port=None, service_cidr=SERVICE_CIDR, pki_ips=("127.0.0.1", "10.0.0.1"),
        # The Endpoints of the `kubernetes` Service may not hold a loopback address.
        apiserver_args=("--authorization-mode=RBAC", "--endpoint-reconciler-type=none"),
    )
    logs = workdir / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        plane = controlplane.start(workdir, bin_dir, layout, procs)
    except BaseException:
        procs.stop_all()
        raise
    kubeconfig = pki.write_private(workdir / "kubeconfig", plane.kubeconfig_for("admin"))
    cluster = KubeCluster(
        kubeconfig=kubeconfig, server=plane.server, token=plane.admin_token,
        ca_file=plane.ca_file, context=plane.context, workdir=workdir, bin_dir=bin_dir,
    )
    return cluster, procs


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    bin_dir = _ensure_binaries()
    workdir = tmp_path_factory.mktemp("kube-cluster")
    cluster, procs = start_cluster(workdir, bin_dir)
    try:
        yield cluster
    finally:
        procs.stop_all()


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster):
    """A `kubernetes.client.ApiClient` for the cluster, made from its kubeconfig."""
    client = kube.api_client(kube_cluster.kubeconfig)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def monitoring_crds(kube_api) -> list[str]:
    """Installs the ServiceMonitor, PrometheusRule and ScaledObject CRDs; returns their names."""
    return kube.install_monitoring_crds(kube_api)
