"""Tier 5: the pipeline's commands (`python -m tools.pipeline`) against a real kube-apiserver.

dev and staging (copies of the shipped stack files, pointed at the test cluster by a text edit
that keeps their layout) are deployed; dev is promoted to staging and exactly the travelling
values change, in the file and on the server; an object changed behind Pulumi's back is
reported by `drift` as exactly that object and field, and `deploy` refuses to overwrite the
field another field manager now owns; promotion out
of a stack whose restore drill never ran, and a deploy with a mandatory violation, are refused.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import kube
from tests.stacks import ROOT

pytestmark = pytest.mark.cluster

DEV, STAGING = "agents-dev", "agents-staging"
TIMEOUT = 900  # one engine run; a cold provider start on two busy cores can take minutes


class Pipeline:
    """A scratch project (Pulumi.yaml and stacks/) and its own backend, driven by the CLI."""

    def __init__(self, root: Path, cluster) -> None:
        self.root = root
        (root / "stacks").mkdir(parents=True)
        (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
        for path in (ROOT / "stacks").iterdir():
            (root / "stacks" / path.name).write_text(path.read_text())
        for stack in ("dev", "staging", "prod"):
            # A text edit, so the files keep the layout and comments a promotion must preserve.
            text = self.text(stack)
            assert f"    context: {stack}\n" in text
            self.write(stack, text.replace(f"    context: {stack}\n",
                                           f"    context: {cluster.context}\n    skip_await: true\n"))
        self.env = {
            **cluster.env(),
            "PULUMI_BACKEND_URL": f"file://{root / 'state'}",
            "PULUMI_HOME": str(root / "pulumi-home"),
            "PULUMI_CONFIG_PASSPHRASE": "pipeline-test",
        }

    def stack_file(self, stack: str) -> Path:
        return self.root / "stacks" / f"Pulumi.{stack}.yaml"

    def text(self, stack: str) -> str:
        return self.stack_file(stack).read_text()

    def write(self, stack: str, text: str) -> None:
        self.stack_file(stack).write_text(text)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        report = self.root / "report.md"
        proc = subprocess.run(
            [sys.executable, "-m", "tools.pipeline", "--work-dir", str(self.root), "--markdown", str(report), *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=TIMEOUT,
        )
        proc.report = report.read_text() if report.exists() else ""  # type: ignore[attr-defined]
        report.unlink(missing_ok=True)
        return proc


def _explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- report\n{proc.report}\n--- stderr (tail)\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, toolchain, kube_cluster, kube_api, monitoring_crds) -> Iterator[Pipeline]:
    """Deploys dev and staging; afterwards deletes every namespace they created, so the other
    cluster tests (which deploy staging too) start on an empty cluster, not into these objects."""
    namespaces_before = {ns["metadata"]["name"] for ns in kube.list_objects(kube_api, "v1", "Namespace")}
    project = Pipeline(tmp_path_factory.mktemp("pipeline"), kube_cluster)
    try:
        for stack in ("dev", "staging"):
            proc = project.run("deploy", stack)
            assert proc.returncode == 0, _explain(proc)
            assert f"Deploy `{stack}`: done" in proc.report
        yield project
    finally:
        created = {ns["metadata"]["name"] for ns in kube.list_objects(kube_api, "v1", "Namespace")} - namespaces_before
        for name in created:
            kube.delete_object(kube_api, "v1", "Namespace", name)
        for name in created:
            kube.wait_gone(kube_api, "v1", "Namespace", name, timeout=180)


def _deployments(api, namespace: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in kube.list_objects(api, "apps/v1", "Deployment", namespace)}


def _flatten(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _flatten(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


def _spec_changes(before: dict, after: dict) -> dict[str, tuple]:
    """Changed leaves of a Deployment's spec and pod-template annotations (what a rollout sees)."""
    old = dict(_flatten({"spec": before["spec"]}))
    new = dict(_flatten({"spec": after["spec"]}))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def test_promote_dev_to_staging_changes_exactly_the_travelling_fields(pipeline, kube_api):
    before_text = pipeline.text("staging")
    before = _deployments(kube_api, STAGING)
    dev = _deployments(kube_api, DEV)

    proc = pipeline.run("promote", "dev", "staging")
    assert proc.returncode == 0, _explain(proc)
    assert "written to stacks/Pulumi.staging.yaml" in proc.report
    assert (
        "| `clusters.workers.image` | `ghcr.io/acme/agents/worker:0.4.2` | `ghcr.io/acme/agents/worker:0.5.0-rc.1` |"
        in proc.report
    )

    changed = [
        line
        for line in difflib.unified_diff(
            before_text.splitlines(), pipeline.text("staging").splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == [
        "-      image: ghcr.io/acme/agents/worker:0.4.2",
        "+      image: ghcr.io/acme/agents/worker:0.5.0-rc.1",
        "-      image: ghcr.io/acme/agents/coordinator:0.4.2",
        "+      image: ghcr.io/acme/agents/coordinator:0.5.0-rc.1",
        "-      max_run_seconds: 900",
        "+      max_run_seconds: 600",
        "-      image: ghcr.io/acme/agents/specialist:0.4.2",
        "+      image: ghcr.io/acme/agents/specialist:0.5.0-rc.1",
    ]

    proc = pipeline.run("deploy", "staging")
    assert proc.returncode == 0, _explain(proc)
    after = _deployments(kube_api, STAGING)
    image = "spec.template.spec.containers[0].image"
    # The pod's version label is derived from the image tag, so it moves with the image.
    version = "spec.template.metadata.labels.app.kubernetes.io/version"
    for name in ("workers", "specialists"):
        old_image = before[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        new_image = dev[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert _spec_changes(before[name], after[name]) == {
            image: (old_image, new_image),
            version: (old_image.rsplit(":", 1)[1], new_image.rsplit(":", 1)[1]),
        }, name
    coordinators = _spec_changes(before["coordinators"], after["coordinators"])
    assert coordinators[image][1] == dev["coordinators"]["spec"]["template"]["spec"]["containers"][0]["image"]
    # max_run_seconds travels, and with it the drain window: preStop 10 s + 600 s + 15 s.
    assert coordinators["spec.template.spec.terminationGracePeriodSeconds"] == (10 + 900 + 15, 10 + 600 + 15)
    # ... and the settings ConfigMap that carries it to the agent, replaced under a new name.
    settings = "spec.template.spec.containers[0].envFrom[0].configMapRef.name"
    assert coordinators[settings][0] != coordinators[settings][1]
    assert set(coordinators) - {image, version, settings, "spec.template.spec.terminationGracePeriodSeconds"} <= {
        k for k in coordinators if "max-run-seconds" in k
    }
    # What is staging's own stayed staging's: replicas, resources, the gateway.
    assert (
        after["workers"]["spec"]["template"]["spec"]["containers"][0]["resources"]
        == before["workers"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    )
    # The gateway's own settings stay. What moves derives from the promoted max_run_seconds: the
    # coordinators' route deadline (in its runtime ConfigMap) and its drain window for the longest run.
    gateway_changes = _spec_changes(before["gateway"], after["gateway"])
    assert set(gateway_changes) == {
        "spec.template.spec.volumes[1].configMap.name",
        "spec.template.metadata.annotations.agent-platform.io/max-run-seconds",
        "spec.template.spec.terminationGracePeriodSeconds",
    }, gateway_changes
    assert gateway_changes["spec.template.metadata.annotations.agent-platform.io/max-run-seconds"] == ("900", "600")


def _drift_rows(report: str) -> list[tuple[str, ...]]:
    rows = []
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0] != "`object`":
            rows.append(tuple(cells))
    return rows


def test_drift_names_exactly_the_changed_object_and_field(pipeline, kube_api):
    proc = pipeline.run("drift", "dev")
    assert proc.returncode == 0, _explain(proc)
    assert "no drift" in proc.report

    path = kube.object_path(kube_api, "apps/v1", "Deployment", "coordinators", DEV)
    # Someone scales by hand: a merge patch from another field manager, no Pulumi involved.
    kube.request(
        kube_api,
        "PATCH",
        path,
        body={"spec": {"replicas": 3}},
        query={"fieldManager": "kubectl-edit"},
        content_type="application/merge-patch+json",
    )

    proc = pipeline.run("drift", "dev")
    assert proc.returncode == 1, _explain(proc)
    assert _drift_rows(proc.report) == [("`Deployment agents-dev/coordinators`", "`spec.replicas`", "`1`", "`3`")], (
        proc.report
    )

    # The hand edit took ownership of the field (Server-Side Apply): `deploy` does not silently
    # overwrite another manager's field, it refuses and names the field and the manager.
    proc = pipeline.run("deploy", "dev")
    assert proc.returncode == 1, _explain(proc)
    assert "refused (the preview failed)" in proc.report
    assert 'conflict with "kubectl-edit"' in proc.report and ".spec.replicas" in proc.report
    assert kube.read_object(kube_api, "apps/v1", "Deployment", "coordinators", DEV)["spec"]["replicas"] == 3


def test_promotion_out_of_a_stack_whose_drill_never_ran_is_refused(pipeline):
    before = pipeline.text("prod")
    proc = pipeline.run("promote", "staging", "prod")
    assert proc.returncode == 1, _explain(proc)
    assert "Promote `staging` → `prod`: refused" in proc.report
    assert "no restore drill has finished in agents-staging" in proc.report
    assert pipeline.text("prod") == before


def test_deploy_with_a_mandatory_violation_is_refused_and_changes_nothing(pipeline, kube_api):
    before = kube.read_object(kube_api, "apps/v1", "Deployment", "gateway", STAGING)
    text = pipeline.text("staging")
    gateway = re.search(r"  agent-platform:gateway:\n(    .*\n)+", text).group(0)
    pipeline.write("staging", text.replace(gateway, gateway.replace("    replicas: 2\n", "    replicas: 1\n")))
    try:
        proc = pipeline.run("deploy", "staging")
    finally:
        pipeline.write("staging", text)
    assert proc.returncode == 1, _explain(proc)
    assert "refused (mandatory policy violations)" in proc.report
    assert "| **mandatory** | `production-replicas` |" in proc.report
    after = kube.read_object(kube_api, "apps/v1", "Deployment", "gateway", STAGING)
    assert after["spec"]["replicas"] == before["spec"]["replicas"] == 2
