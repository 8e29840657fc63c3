"""The node's network namespace: created with `ip netns add`, given a veth pair whose two ends
both stay inside (the node's address on one, the default route's gateway on the other), so the
kubelet finds a default route and no packet can leave. Code reaches it by `setns` in a thread
(Python 3.11 has no os.setns): sockets a thread creates after setns(CLONE_NEWNET) belong to the
namespace and keep working from any thread."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

NODE_IF = "node0"
GATEWAY_IF = "gw0"


def path(name: str) -> Path:
    return Path("/run/netns") / name


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def create(name: str, node_cidr: str, gateway: str) -> None:
    """`node_cidr`: the node's address with its prefix (10.210.0.2/24); `gateway`: the other end."""
    _ip("netns", "add", name)
    prefix = node_cidr.split("/")[1]
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "link", "add", NODE_IF, "type", "veth", "peer", "name", GATEWAY_IF)
    _ip("-n", name, "addr", "add", node_cidr, "dev", NODE_IF)
    _ip("-n", name, "addr", "add", f"{gateway}/{prefix}", "dev", GATEWAY_IF)
    _ip("-n", name, "link", "set", NODE_IF, "up")
    _ip("-n", name, "link", "set", GATEWAY_IF, "up")
    _ip("-n", name, "route", "add", "default", "via", gateway, "dev", NODE_IF)
    # Pods on the CNI bridge go through iptables (kube-proxy's Services, kube-router's policies);
    # these sysctls are per namespace.
    sysctl(name, {
        "net.ipv4.ip_forward": "1",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
    })


def sysctl(name: str, values: dict[str, str]) -> None:
    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", *key.split(".")).write_text(value)
    run_in(name, write)


def exists(name: str) -> bool:
    return path(name).exists()


def inode(name: str) -> int | None:
    try:
        return os.stat(path(name)).st_ino
    except OSError:
        return None


def pids_inside(name: str) -> list[int]:
    """Every process whose network namespace is this one."""
    ino = inode(name)
    found = []
    if ino is None:
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def delete(name: str) -> None:
    """Removes the namespace, and with it its interfaces, iptables rules and ipsets."""
    if exists(name):
        _ip("netns", "delete", name)


def wrap(name: str) -> tuple[str, ...]:
    """A command prefix running the command inside (nsenter execs it: the PID stays the
    command's own; `ip netns exec` would also remount /sys)."""
    return ("nsenter", f"--net={path(name)}", "--")


def run_in(name: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Calls fn in a thread that has entered the namespace; returns its result or raises."""
    result: list = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(path(name), os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({path(name)}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def connect(name: str, host: str, port: int, timeout: float = 10) -> socket.socket:
    """A TCP connection to an address inside the namespace (a pod, a Service, the node)."""
    return run_in(name, socket.create_connection, (host, port), timeout)


def run(name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run of a command inside the namespace."""
    return subprocess.run([*wrap(name), *argv], **kwargs)
