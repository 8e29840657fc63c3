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

import base64
import ctypes
import dataclasses
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

try:  # tests/ as a package, or pytest's rootdir-relative (prepend) imports
    from . import kube
except ImportError:
    import kube

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "build-kube.sh"
KUBE_VERSION = "v1.34.4"  # keep in step with tools/build-kube.sh
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
START_TIMEOUT = float(os.environ.get("AGENT_PLATFORM_KUBE_START_TIMEOUT", "240"))
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
    cache = os.environ.get("AGENT_PLATFORM_CACHE") or os.path.expanduser("~/.cache/agent-platform")
    return Path(cache) / f"kube-{KUBE_VERSION}" / "bin"


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


# --- certificates and credentials -----------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate signed by it, and the service-account keys."""
    pki.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=agent-platform-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", cwd=pki)
    sans = ",".join([
        "IP:127.0.0.1", "IP:10.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
    ])
    (pki / "apiserver.ext").write_text(
        f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key",
             "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver", cwd=pki)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "apiserver.crt", "-days", "2", "-extfile", "apiserver.ext",
             cwd=pki)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key",
             cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def _kubeconfig(server: str, ca_file: Path, user: str, token: str, context: str) -> str:
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
        "preferences": {},
    }, sort_keys=False)


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


# --- processes ------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    # Runs in the child between fork and exec (its own session, hence its own process group):
    # if pytest dies without tearing down, the kernel kills the control plane too.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_child_setup,
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode} during startup; its log "
                    f"({self.logs / (name + '.log')}) ends:\n{self.log_tail(name)}"
                )

    def stop_all(self) -> None:
        """SIGTERM each process group (newest first), SIGKILL what lingers, verify none is left."""
        for proc in reversed(list(self.procs.values())):
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
            _signal_group(proc.pid, signal.SIGKILL)  # any child left behind in the group
        deadline = time.monotonic() + 10
        left = [name for name, proc in self.procs.items() if _group_alive(proc.pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = [name for name, proc in self.procs.items() if _group_alive(proc.pid)]
        self.procs.clear()
        if left:
            raise RuntimeError(f"processes of {left} still running after teardown")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until(what: str, check, procs: _Processes, timeout: float = START_TIMEOUT) -> None:
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


def _http_get(url: str, context: ssl.SSLContext | None, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=5, context=context
        ) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


# --- the cluster ----------------------------------------------------------------------------


def start_cluster(workdir: Path, bin_dir: Path) -> tuple[KubeCluster, _Processes]:
    pki = workdir / "pki"
    _make_pki(pki)
    etcd_client, etcd_peer, api_port, kcm_port = _free_ports(4)
    admin_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    kcm_token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
    tokens = workdir / "tokens.csv"  # token,user,uid,"groups"
    tokens.write_text(
        f'{admin_token},admin,admin,"system:masters"\n'
        f'{kcm_token},system:kube-controller-manager,kcm,"system:masters"\n'
    )
    tokens.chmod(0o600)
    server = f"https://127.0.0.1:{api_port}"
    context = "agent-platform-test"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, pki / "ca.crt", "admin", admin_token, context))
    kubeconfig.chmod(0o600)
    kcm_kubeconfig = workdir / "kube-controller-manager.kubeconfig"
    kcm_kubeconfig.write_text(
        _kubeconfig(server, pki / "ca.crt", "system:kube-controller-manager", kcm_token, context)
    )
    logs = workdir / "logs"
    logs.mkdir()
    procs = _Processes(logs)
    cluster = KubeCluster(
        kubeconfig=kubeconfig, server=server, token=admin_token, ca_file=pki / "ca.crt",
        context=context, workdir=workdir, bin_dir=bin_dir,
    )
    try:
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        procs.start("etcd", [
            str(bin_dir / "etcd"), "--name=default", f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}", "--initial-cluster-state=new",
            "--unsafe-no-fsync=true", "--log-level=warn",
        ])

        def etcd_healthy():
            status, body = _http_get(f"{etcd_url}/health", None)
            return status == 200 and json.loads(body).get("health") == "true", body

        _wait_until("etcd", etcd_healthy, procs)

        procs.start("kube-apiserver", [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The Endpoints of the `kubernetes` Service may not hold a loopback address.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
        ])

        def apiserver_ready():
            status, body = _http_get(f"{server}/readyz", cluster.ssl_context(), admin_token)
            return status == 200, f"{status} {body[-500:]}"

        _wait_until("kube-apiserver /readyz", apiserver_ready, procs)

        procs.start("kube-controller-manager", [
            str(bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}",
            f"--cert-dir={workdir / 'kcm-certs'}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--profiling=false",
        ])
        unverified = ssl._create_unverified_context()  # kcm serves a self-signed certificate

        def kcm_healthy():
            status, body = _http_get(f"https://127.0.0.1:{kcm_port}/healthz", unverified)
            return status == 200, f"{status} {body[-500:]}"

        _wait_until("kube-controller-manager /healthz", kcm_healthy, procs)
    except BaseException:
        procs.stop_all()
        raise
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
