"""One Kubernetes node inside a network namespace: containerd, the control plane with
kube-scheduler, the kubelet, kube-proxy (iptables), kube-router's NetworkPolicy firewall, and
CoreDNS and metrics-server as pods. `up` brings it up in a fresh work directory and namespace;
`down` takes every piece away again (processes by PID, containers, mounts, cgroups, the
namespace with its interfaces and iptables rules), so that a second `up` starts clean.

Addresses (all inside the namespace, so several nodes may run side by side):
  node 10.210.0.2 (veth node0; gw0 10.210.0.1 the default route), pods 10.244.0.0/24 on bridge
  cni0 without masquerading, Services 10.96.0.0/16 (API 10.96.0.1, DNS 10.96.0.10).
The host reaches the API server on 127.0.0.1:<api_port> (a forwarder process).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import yaml

from tools.node import addons, controlplane, images, netns, pki
from tools.node.forward import Forwarder
from tools.node.procs import Processes, dump

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "node"
NODE_IP = "10.210.0.2"
GATEWAY_IP = "10.210.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
POD_SUBNET = "10.244.0.0/24"  # the first /24 the controller-manager allocates
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_IP = "10.96.0.10"
API_PORT = 6443
CONTAINERD_VERSION = "v2.4.2"
CRICTL_VERSION = "v1.34.0"
KUBE_ROUTER_VERSION = "v2.1.0"
READY_TIMEOUT = float(os.environ.get("AGENT_PLATFORM_NODE_READY_TIMEOUT", "300"))
CGROUP_V1 = Path("/sys/fs/cgroup")


def _bins() -> dict[str, Path]:
    cache = controlplane.cache_dir()
    kube = controlplane.kube_bin_dir()
    found = {name: kube / name for name in (
        "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet",
        "kube-proxy")}
    found.update({
        "containerd": cache / f"containerd-{CONTAINERD_VERSION}/bin/containerd",
        "ctr": cache / f"containerd-{CONTAINERD_VERSION}/bin/ctr",
        "crictl": cache / f"crictl-{CRICTL_VERSION}/bin/crictl",
        "kube-router": cache / f"kube-router-{KUBE_ROUTER_VERSION}/bin/kube-router",
    })
    return found


def ensure_binaries() -> dict[str, Path]:
    """The node's binaries, built by tools/build-kube.sh and tools/build-node.sh when missing."""
    bins = _bins()
    if not all(os.access(p, os.X_OK) for p in bins.values()):
        for script in ("build-kube.sh", "build-node.sh"):
            subprocess.run(["bash", str(REPO / "tools" / script)], check=True,
                           stdout=subprocess.DEVNULL)
    missing = [str(p) for p in bins.values() if not os.access(p, os.X_OK)]
    if missing:
        raise FileNotFoundError(f"node binaries missing after the builds: {missing}")
    return bins


@dataclasses.dataclass
class Node:
    name: str
    workdir: Path
    api_port: int  # on the host's 127.0.0.1
    admin_token: str = ""
    ready_seconds: float | None = None  # node start to every system pod Ready
    procs: dict = dataclasses.field(default_factory=dict)

    # --- where things are -------------------------------------------------------------------

    @property
    def netns(self) -> str:
        return f"apnode-{self.name}"

    @property
    def cgroup_root(self) -> str:
        return f"agent-platform-node-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig for the host: https://127.0.0.1:<api_port>."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """A copy of the environment with KUBECONFIG pointing at this node."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    # --- reaching inside ----------------------------------------------------------------------

    def in_netns(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Calls fn in a thread inside the node's namespace (its sockets are the namespace's)."""
        return netns.run_in(self.netns, fn, *args, **kwargs)

    def connect(self, host: str, port: int, timeout: float = 10) -> socket.socket:
        """A TCP connection from the host to a pod, Service or node address."""
        return netns.connect(self.netns, host, port, timeout)

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run of a command inside the node's namespace."""
        return netns.run(self.netns, argv, **kwargs)

    def forward(self, host: str, port: int, listen_port: int = 0) -> Forwarder:
        """127.0.0.1:<.listen_port> relayed to host:port inside (close() it when done)."""
        return Forwarder(self.netns, host, port, listen_port)

    def ctr(self) -> list[str]:
        return [str(_bins()["ctr"]), "--address", str(self.containerd_socket)]

    def import_images(self, archives: Iterable[tuple[str, Path]] | dict[str, Path]) -> None:
        """Imports OCI archives into the node's containerd under the given image names, so pods
        naming them start with no pull (imagePullPolicy IfNotPresent or Never)."""
        items = archives.items() if isinstance(archives, dict) else archives
        images.import_archives(self.ctr(), list(items))

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """One request to the API server as the admin; (status, decoded body)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.admin_token}",
                     "Content-Type": "application/json", "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=15, context=context) as resp:
                raw = resp.read()
                try:
                    return resp.status, json.loads(raw or b"{}")
                except ValueError:  # /readyz and friends answer text
                    return resp.status, {"text": raw.decode(errors="replace")}
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, {"message": raw.decode(errors="replace")}

    # --- state ------------------------------------------------------------------------------

    def save(self) -> None:
        dump(self.workdir / "state.json", {
            "name": self.name, "api_port": self.api_port, "admin_token": self.admin_token,
            "ready_seconds": self.ready_seconds, "procs": self.procs})

    @classmethod
    def load(cls, workdir: Path) -> Node:
        state = json.loads((workdir / "state.json").read_text())
        return cls(name=state["name"], workdir=workdir, api_port=state["api_port"],
                   admin_token=state["admin_token"], ready_seconds=state["ready_seconds"],
                   procs=state["procs"])


# --- configuration files ----------------------------------------------------------------------


def _containerd_config(node: Node, pause_image: str) -> str:
    base = node.workdir / "containerd"
    cri = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""\
version = 3
root = '{base}/root'
state = '{base}/state'
disabled_plugins = ['io.containerd.nri.v1.nri']

[grpc]
  address = '{node.containerd_socket}'

[ttrpc]
  address = '{node.containerd_socket}.ttrpc'

[plugins.'io.containerd.internal.v1.opt']
  path = '{base}/opt'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{pause_image}'

[{cri}]
  # No process here may lower its oom_score_adj (no CAP_SYS_RESOURCE): without this every
  # sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [{cri}.containerd]
    default_runtime_name = 'runc'
    [{cri}.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [{cri}.containerd.runtimes.runc.options]
        BinaryName = '{shutil.which("runc") or "/usr/sbin/runc"}'
        Root = '{base}/runc'
        SystemdCgroup = false
  [{cri}.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '{node.workdir}/cni/net.d'
"""


def _cni_config(node: Node) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "agent-platform-node", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(node.workdir / "cni" / "ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]}, indent=2)


def _kubelet_config(node: Node) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{node.cgroup_root}",  # kubepods of this node only
        "failSwapOn": False,
        "oomScoreAdj": 0,  # see restrict_oom_score_adj
        "address": "0.0.0.0", "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(node.ca_file)}},
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local",
        "resolvConf": str(node.workdir / "resolv.conf"),  # no upstream: nothing leaves
        "podLogsDir": str(node.workdir / "pod-logs"),
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        # Imported images cannot be pulled again: never collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "maxPods": 110,
        "registerNode": True,
    }


def _kube_proxy_config(node: Node) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(node.workdir / "kube-proxy.kubeconfig")},
        "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "conntrack": {"maxPerCore": 0},  # the namespace may not change the host's table size
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
    }


def _legacy_iptables(bindir: Path) -> None:
    """kube-proxy and kube-router must write the same tables: iptables-legacy for both (the
    host's default `iptables` may be the nft variant)."""
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("iptables", "iptables-save", "iptables-restore",
                 "ip6tables", "ip6tables-save", "ip6tables-restore"):
        base, _, action = tool.partition("-")  # iptables-save -> iptables-legacy-save
        legacy = f"{base}-legacy" + (f"-{action}" if action else "")
        target = shutil.which(legacy)
        if target is None:
            raise FileNotFoundError(f"{legacy} not found: install Debian's iptables (make system-deps)")
        (bindir / tool).unlink(missing_ok=True)
        (bindir / tool).symlink_to(target)


# --- cgroups ----------------------------------------------------------------------------------


def _cgroup_dirs(root: str) -> list[Path]:
    """The node's cgroup in every hierarchy (cgroup v1 controllers and the cgroup2 mount)."""
    dirs = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            dirs.append(Path(mountpoint) / root)
    return dirs


def _make_cgroups(root: str) -> None:
    for d in _cgroup_dirs(root):
        d.mkdir(exist_ok=True)
        if (d.parent / "cpuset.cpus").exists():  # v1 cpuset children start empty
            for key in ("cpuset.cpus", "cpuset.mems"):
                (d / key).write_text((d.parent / key).read_text())


def _remove_cgroups(root: str) -> list[str]:
    """Kills what is left in the node's cgroups and removes them, deepest first; returns the
    ones that would not go."""
    left = []
    for top in _cgroup_dirs(root):
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    pids = []
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left.append(str(d))
    return left


# --- mounts -----------------------------------------------------------------------------------


def _mounts_under(prefix: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mountpoint = line.split()[4].replace("\\040", " ")
        if mountpoint == str(prefix) or mountpoint.startswith(f"{prefix}/"):
            found.append(mountpoint)
    return found


def _unmount_all(prefix: Path) -> list[str]:
    for _ in range(5):
        mounts = _mounts_under(prefix)
        if not mounts:
            return []
        for mountpoint in sorted(mounts, key=lambda m: -m.count("/")):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    return _mounts_under(prefix)


# --- up ---------------------------------------------------------------------------------------


def _wait(what: str, check: Callable[[], tuple[bool, str]], procs: Processes,
          timeout: float = READY_TIMEOUT) -> None:
    controlplane.wait_until(what, check, procs, timeout)


def _in_ns_get(ns: str):
    def get(url: str, context, token):
        return netns.run_in(ns, controlplane._http_get, url, context, token)
    return get


def up(name: str, workdir: Path, api_port: int = 0, extra_images: dict[str, Path] | None = None,
       detach: bool = False, log: Callable[[str], None] = lambda _: None) -> Node:
    """Brings a node up (raises, after taking down what had started, if it cannot).
    `detach`: the processes outlive this one (the CLI); otherwise they die with it.
    `extra_images` are imported before any pod starts."""
    started = time.monotonic()
    bins = ensure_binaries()
    node_images = images.node_images()
    workdir.mkdir(parents=True, exist_ok=True)
    if (workdir / "state.json").exists():
        raise RuntimeError(f"a node already runs from {workdir}: take it down first")
    if api_port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            api_port = s.getsockname()[1]
    node = Node(name=name, workdir=workdir, api_port=api_port)
    if netns.exists(node.netns):
        raise RuntimeError(f"network namespace {node.netns} exists: `python -m tools.node down`")
    for sub in ("logs", "cni/net.d", "containerd", "pod-logs", "kubelet"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    procs = Processes(node.logs, die_with_parent=not detach)
    node.save()  # from here on `down` can clean up
    try:
        netns.create(node.netns, f"{NODE_IP}/24", GATEWAY_IP)
        _make_cgroups(node.cgroup_root)
        _legacy_iptables(workdir / "bin")
        env = {"PATH": f"{workdir / 'bin'}:{bins['containerd'].parent}:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": str(workdir)}
        wrap = netns.wrap(node.netns)
        (workdir / "resolv.conf").write_text("")
        (workdir / "cni/net.d/10-bridge.conflist").write_text(_cni_config(node))

        def record() -> None:
            node.procs = procs.to_json()
            node.save()

        (workdir / "containerd/config.toml").write_text(
            _containerd_config(node, images.PAUSE_IMAGE))
        procs.start("containerd", [*wrap, str(bins["containerd"]), "--config",
                                   str(workdir / "containerd/config.toml"),
                                   "--log-level", "warn"], env=env)
        record()

        def containerd_up():
            proc = subprocess.run([*node.ctr(), "version"], capture_output=True, text=True)
            return proc.returncode == 0, proc.stderr.strip()[-300:]

        _wait("containerd", containerd_up, procs, 60)
        node.import_images({**node_images, **(extra_images or {})})
        log(f"containerd up, images imported ({time.monotonic() - started:.1f}s)")

        layout = controlplane.Layout(
            address=NODE_IP, bind_address="0.0.0.0", api_port=API_PORT, etcd_client_port=2379,
            etcd_peer_port=2380, kcm_port=10257, scheduler_port=10259, service_cidr=SERVICE_CIDR,
            pki_ips=("127.0.0.1", NODE_IP, API_SERVICE_IP), wrap=wrap, env=env,
            apiserver_args=(
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",  # PodSecurity is on by default
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={workdir / 'pki/kubelet-client.crt'}",
                f"--kubelet-client-key={workdir / 'pki/kubelet-client.key'}",
                # The aggregation layer, for metrics.k8s.io.
                f"--requestheader-client-ca-file={workdir / 'pki/ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={workdir / 'pki/front-proxy-client.crt'}",
                f"--proxy-client-key-file={workdir / 'pki/front-proxy-client.key'}",
                "--enable-aggregator-routing=true",
            ),
            kcm_args=("--allocate-node-cidrs=true", f"--cluster-cidr={CLUSTER_CIDR}",
                      "--node-cidr-mask-size=24", f"--service-cluster-ip-range={SERVICE_CIDR}"),
        )
        try:
            plane = controlplane.start(workdir, bins["kube-apiserver"].parent, layout, procs,
                                       _in_ns_get(node.netns))
        finally:
            record()
        node.admin_token = plane.admin_token
        log(f"control plane up ({time.monotonic() - started:.1f}s)")

        procs.start("forward", [sys.executable, "-m", "tools.node.forward", node.netns,
                                str(api_port), NODE_IP, str(API_PORT)],
                    env={**os.environ, "PYTHONPATH": str(REPO)})
        record()
        pki.write_private(node.kubeconfig, plane.kubeconfig_for("admin", node.server))

        def apiserver_via_forward():
            status, body = node.api("GET", "/readyz")
            return status == 200, str(body)[-300:]

        _wait("the API server through 127.0.0.1", apiserver_via_forward, procs, 30)
        for user, file in (("system:node:node", "kubelet"), ("system:kube-proxy", "kube-proxy"),
                           ("kube-router", "kube-router")):
            pki.write_private(workdir / f"{file}.kubeconfig", plane.kubeconfig_for(user))

        (workdir / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(node)))
        procs.start("kubelet", [
            *wrap, str(bins["kubelet"]), f"--config={workdir / 'kubelet.yaml'}",
            f"--kubeconfig={workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={workdir / 'kubelet'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", "--v=1",
        ], env=env)
        (workdir / "kube-proxy.yaml").write_text(yaml.safe_dump(_kube_proxy_config(node)))
        procs.start("kube-proxy", [*wrap, str(bins["kube-proxy"]),
                                   f"--config={workdir / 'kube-proxy.yaml'}"], env=env)
        record()

        def registered():
            status, body = node.api("GET", f"/api/v1/nodes/{NODE_NAME}")
            return status == 200 and bool(body.get("spec", {}).get("podCIDR")), str(status)

        # kube-router finds its node by name (and its pod CIDR) at start.
        _wait("the node registered with a pod CIDR", registered, procs, 60)
        # Only the firewall: routing is the bridge's, Services are kube-proxy's.
        procs.start("kube-router", [
            *wrap, str(bins["kube-router"]), f"--kubeconfig={workdir / 'kube-router.kubeconfig'}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            f"--hostname-override={NODE_NAME}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--metrics-port=0", "--health-port=20244",
        ], env=env)
        record()

        for obj in addons.all_addons(DNS_IP):
            _create(node, obj)
        _wait("node and system pods Ready", lambda: _system_ready(node), procs)
        node.ready_seconds = round(time.monotonic() - started, 1)
        record()
        log(f"node and system pods Ready ({node.ready_seconds}s)")
    except BaseException:
        down(workdir)
        raise
    return node


_PLURALS = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
            "ClusterRoleBinding": "clusterrolebindings", "RoleBinding": "rolebindings",
            "ConfigMap": "configmaps", "Deployment": "deployments", "Service": "services",
            "APIService": "apiservices"}


def _create(node: Node, obj: dict) -> None:
    api_version = obj["apiVersion"]
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if "namespace" in obj["metadata"]:
        path += f"/namespaces/{obj['metadata']['namespace']}"
    status, body = node.api("POST", f"{path}/{_PLURALS[obj['kind']]}", obj)
    if status not in (200, 201, 409):
        raise RuntimeError(f"creating {obj['kind']} {obj['metadata']['name']}: {status} {body}")


def _system_ready(node: Node) -> tuple[bool, str]:
    status, nodes = node.api("GET", "/api/v1/nodes")
    ready = [n for n in nodes.get("items", []) if any(
        c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
    if not ready:
        return False, f"node not Ready: {status} {str(nodes)[-300:]}"
    _, pods = node.api("GET", "/api/v1/namespaces/kube-system/pods")
    waiting = [p["metadata"]["name"] for p in pods.get("items", []) if not any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", []))]
    if waiting or not pods.get("items"):
        return False, f"system pods not Ready: {waiting or 'none yet'}"
    _, service = node.api("GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
    conditions = {c["type"]: c for c in service.get("status", {}).get("conditions", [])}
    if conditions.get("Available", {}).get("status") != "True":
        return False, f"metrics.k8s.io not Available: {conditions.get('Available')}"
    status, metrics = node.api("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    if status != 200 or not metrics.get("items"):
        return False, f"no node metrics yet: {status}"
    return True, "ready"


# --- down -------------------------------------------------------------------------------------


def _shims(socket_path: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and \
                str(socket_path).encode() in argv:
            found.append(int(entry))
    return found


def down(workdir: Path) -> list[str]:
    """Takes the node of `workdir` down completely; returns what could not be removed (empty
    when all went). Safe to run again, or on a half-started node."""
    state = workdir / "state.json"
    if not state.exists():
        return []
    node = Node.load(workdir)
    procs = Processes.from_json(node.logs, node.procs)
    problems: list[str] = []
    # The kubelet first, so it restarts nothing; then every pod through the CRI (stops the
    # containers, tears down their networks and mounts).
    if "kubelet" in procs.procs:
        try:
            procs.stop("kubelet")
        except RuntimeError as err:
            problems.append(str(err))
    if "containerd" in procs.procs and procs.alive("containerd"):
        crictl = [str(_bins()["crictl"]), "--runtime-endpoint", f"unix://{node.containerd_socket}",
                  "--timeout", "30s"]
        subprocess.run([*crictl, "rmp", "--all", "--force"], capture_output=True, timeout=120)
    try:
        procs.stop_all()
    except RuntimeError as err:
        problems.append(str(err))
    for pid in _shims(node.containerd_socket):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for pid in netns.pids_inside(node.netns):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    problems += [f"cgroup {d}" for d in _remove_cgroups(node.cgroup_root)]
    problems += [f"mount {m}" for m in _unmount_all(workdir)]
    try:
        netns.delete(node.netns)
    except RuntimeError as err:
        problems.append(str(err))
    if not problems:
        for child in workdir.iterdir():
            if child.name != "logs":
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
    return problems
