"""The node tier: a real single-node Kubernetes (tools/node) inside a network namespace of its own.

`node_cluster` (session scope) brings up containerd, the control plane with kube-scheduler, the
kubelet, kube-proxy, kube-router's NetworkPolicy firewall, CoreDNS and metrics-server, and takes
all of it down again at the end (processes, containers, mounts, cgroups, the namespace). Pods and
Services have addresses inside the namespace only; a test reaches them with `node.connect` or a
`node.forward` port on 127.0.0.1. The binaries are built on first use (tools/build-kube.sh,
tools/build-node.sh) into the cache outside the repository.

The tier needs root (network namespaces, cgroups, mounts). It is not skipped when it cannot run:
a machine that cannot run it fails the tier with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.engine_project import Project
from tests.node import pods
from tests.node.monitoring import Monitoring
from tools.node import deploy
from tools.node import node as node_mod


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.fspath):
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[node_mod.Node]:
    if os.geteuid() != 0:
        pytest.fail("the node tier needs root (network namespaces, cgroups, mounts)")
    workdir = tmp_path_factory.mktemp("node")
    # Named after this process, so two test sessions on one machine do not meet.
    node = node_mod.up(f"t{os.getpid()}", workdir)
    try:
        yield node
    finally:
        problems = node_mod.down(workdir)
        assert not problems, f"the node did not come down cleanly: {problems}"


@pytest.fixture(scope="session")
def monitoring(node_cluster, tmp_path_factory) -> Iterator[Monitoring]:
    """The Pushgateway and webhook receiver the node stack names, up before it is deployed."""
    services = Monitoring(node_cluster, tmp_path_factory.mktemp("monitoring"))
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def platform(node_cluster, monitoring, toolchain, tmp_path_factory):
    """The node stack deployed by `pulumi up` (policy pack on, readiness awaited); destroyed at the
    end of the session, which must leave nothing behind."""
    node = node_cluster
    deploy.prepare(node)
    project = Project(tmp_path_factory.mktemp("platform"))
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(node.kubeconfig)
    try:
        result = project.run("up", deploy.STACK, policy_packs=["policies"])
        assert result.summary.result == "succeeded"
        yield node, project, result
        destroyed = project.run("destroy", deploy.STACK)
        assert destroyed.summary.result == "succeeded"
        # Nothing left behind: the namespace and everything in it go (its deletion finishes
        # once the namespace controller has emptied it).
        pods.wait_for("the namespace gone",
                      lambda: node.api("GET", f"/api/v1/namespaces/{deploy.NAMESPACE}")[0] == 404, timeout=120)
    finally:
        if old is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = old
