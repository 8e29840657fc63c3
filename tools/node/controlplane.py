"""etcd, kube-apiserver, kube-controller-manager and optionally kube-scheduler of a test cluster.

The cluster tier (tests/cluster) runs them on free ports of 127.0.0.1 with no node; the node
(`tools.node.node`) runs them inside its network namespace, the API server advertising the
node's address so that pods reach it through the `kubernetes` Service. `Layout` says which.
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tools.node import pki
from tools.node.procs import Processes

KUBE_VERSION = "v1.34.4"  # keep in step with tools/build-kube.sh
START_TIMEOUT = float(os.environ.get("AGENT_PLATFORM_KUBE_START_TIMEOUT", "240"))


def cache_dir() -> Path:
    return Path(os.environ.get("AGENT_PLATFORM_CACHE") or os.path.expanduser("~/.cache/agent-platform"))


def kube_bin_dir() -> Path:
    return cache_dir() / f"kube-{KUBE_VERSION}" / "bin"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the control plane listens. `wrap` prefixes every command (nsenter into the node's
    namespace); `http_get` is how this process reaches those addresses."""

    address: str  # the API server's advertise address
    bind_address: str
    api_port: int
    etcd_client_port: int
    etcd_peer_port: int
    kcm_port: int
    scheduler_port: int | None  # None: no scheduler (no node to schedule to)
    service_cidr: str
    pki_ips: tuple[str, ...]
    wrap: tuple[str, ...] = ()
    apiserver_args: tuple[str, ...] = ()
    kcm_args: tuple[str, ...] = ()
    env: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class ControlPlane:
    workdir: Path
    server: str  # https://<address>:<port>, as seen from where the control plane runs
    admin_token: str
    ca_file: Path
    context: str
    tokens: dict[str, str]  # user -> token (admin, kubelet, kube-proxy, ...)

    def kubeconfig_for(self, user: str, server: str | None = None) -> str:
        return pki.kubeconfig(server or self.server, self.ca_file, user, self.tokens[user],
                              self.context)


# Users with static tokens: name -> groups. Default RBAC bindings cover the system users
# (system:node-proxier for kube-proxy, system:kube-scheduler); the Node authorizer the kubelet.
USERS = {
    "admin": "system:masters",
    "system:kube-controller-manager": "system:masters",
    "system:kube-scheduler": "",
    "system:kube-proxy": "",
    "system:node:node": "system:nodes",
    "kube-router": "system:masters",
}


def _http_get(url: str, context: ssl.SSLContext | None, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=5, context=context
        ) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


HttpGet = Callable[[str, "ssl.SSLContext | None", "str | None"], tuple[int, str]]


def wait_until(what: str, check: Callable[[], tuple[bool, str]], procs: Processes,
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "never answered"
    while True:
        procs.check_alive()
        try:
            ok, last = check()
            if ok:
                return
        except (OSError, ValueError) as err:  # refused, reset, TLS not up yet, bad JSON
            last = repr(err)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s; last answer: {last}")
        time.sleep(0.25)


def start(workdir: Path, bin_dir: Path, layout: Layout, procs: Processes,
          http_get: HttpGet = _http_get) -> ControlPlane:
    """Starts the control plane and waits until each piece answers; on failure the caller stops
    `procs`. Credentials and logs go under `workdir`."""
    pkidir = workdir / "pki"
    pki.make_pki(pkidir, layout.pki_ips)
    tokens = {user: pki.new_token() for user in USERS}
    pki.write_private(workdir / "tokens.csv", "".join(  # token,user,uid,"groups"
        f'{tokens[user]},{user},{user},"{groups}"\n' for user, groups in USERS.items()))
    server = f"https://{layout.address}:{layout.api_port}"
    plane = ControlPlane(workdir=workdir, server=server, admin_token=tokens["admin"],
                         ca_file=pkidir / "ca.crt", context="agent-platform-test", tokens=tokens)
    wrap = list(layout.wrap)
    etcd_url = f"http://127.0.0.1:{layout.etcd_client_port}"
    peer_url = f"http://127.0.0.1:{layout.etcd_peer_port}"
    procs.start("etcd", [
        *wrap, str(bin_dir / "etcd"), "--name=default", f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}", "--initial-cluster-state=new",
        "--unsafe-no-fsync=true", "--log-level=warn",
    ], env=layout.env)

    def etcd_healthy():
        status, body = http_get(f"{etcd_url}/health", None, None)
        return status == 200 and json.loads(body).get("health") == "true", body

    wait_until("etcd", etcd_healthy, procs)

    procs.start("kube-apiserver", [
        *wrap, str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={etcd_url}",
        f"--bind-address={layout.bind_address}", f"--advertise-address={layout.address}",
        f"--secure-port={layout.api_port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pkidir / 'apiserver.crt'}",
        f"--tls-private-key-file={pkidir / 'apiserver.key'}",
        f"--client-ca-file={pkidir / 'ca.crt'}",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pkidir / 'sa.pub'}",
        f"--service-account-signing-key-file={pkidir / 'sa.key'}",
        f"--service-cluster-ip-range={layout.service_cidr}",
        "--allow-privileged=true",
        "--profiling=false",
        *layout.apiserver_args,
    ], env=layout.env)
    ca = ssl.create_default_context(cafile=str(plane.ca_file))

    def apiserver_ready():
        status, body = http_get(f"{server}/readyz", ca, plane.admin_token)
        return status == 200, f"{status} {body[-500:]}"

    wait_until("kube-apiserver /readyz", apiserver_ready, procs)

    kcm_kubeconfig = pki.write_private(workdir / "kube-controller-manager.kubeconfig",
                                       plane.kubeconfig_for("system:kube-controller-manager"))
    procs.start("kube-controller-manager", [
        *wrap, str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kcm_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={layout.kcm_port}",
        f"--cert-dir={workdir / 'kcm-certs'}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pkidir / 'sa.key'}",
        f"--root-ca-file={pkidir / 'ca.crt'}",
        f"--cluster-signing-cert-file={pkidir / 'ca.crt'}",
        f"--cluster-signing-key-file={pkidir / 'ca.key'}",
        "--profiling=false",
        *layout.kcm_args,
    ], env=layout.env)
    unverified = ssl._create_unverified_context()  # they serve self-signed certificates

    def healthy(port: int):
        def check():
            status, body = http_get(f"https://127.0.0.1:{port}/healthz", unverified, None)
            return status == 200, f"{status} {body[-500:]}"
        return check

    wait_until("kube-controller-manager /healthz", healthy(layout.kcm_port), procs)

    if layout.scheduler_port is not None:
        sched_kubeconfig = pki.write_private(workdir / "kube-scheduler.kubeconfig",
                                             plane.kubeconfig_for("system:kube-scheduler"))
        procs.start("kube-scheduler", [
            *wrap, str(bin_dir / "kube-scheduler"),
            f"--kubeconfig={sched_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={layout.scheduler_port}",
            f"--cert-dir={workdir / 'scheduler-certs'}",
            "--leader-elect=false", "--profiling=false",
        ], env=layout.env)
        wait_until("kube-scheduler /healthz", healthy(layout.scheduler_port), procs)
    return plane
