"""`pulumi preview/up/destroy` of the local stack with the real engine and Kubernetes provider."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
import yaml

pytestmark = pytest.mark.engine

KUBERNETES_VERSION = "1.34.0"


def _manifests(project) -> list[dict]:
    files = sorted(project.manifests.rglob("*.yaml"))
    return [doc for f in files for doc in yaml.safe_load_all(f.read_text()) if doc]


def test_preview_up_noop_edit_and_destroy(project):
    preview = project.run("preview", policy_packs=["policies"])
    assert preview.change_summary.get("create", 0) > 20

    first = project.run("up")
    assert first.summary.result == "succeeded"
    outputs = {k: v.value for k, v in first.outputs.items()}
    assert outputs["namespace"] == "agents-local"
    assert outputs["gateway_url"] == "http://gateway.agents-local.svc.cluster.local"
    kinds = Counter(doc["kind"] for doc in _manifests(project))
    assert kinds["Deployment"] == 4 and kinds["PodDisruptionBudget"] == 4
    assert kinds["NetworkPolicy"] >= 6 and kinds["Namespace"] == 1

    second = project.run("up")
    assert set(second.summary.resource_changes) == {"same"}, second.summary.resource_changes

    def widen_workers(config):
        config["agent-platform:clusters"][0]["autoscaling"]["max_instances"] = 5

    project.edit("local", widen_workers)
    third = project.run("up")
    changes = {k: v for k, v in third.summary.resource_changes.items() if k != "same"}
    assert changes == {"update": 1}, third.summary.resource_changes
    hpa = next(d for d in _manifests(project) if d["kind"] == "HorizontalPodAutoscaler"
               and d["metadata"]["name"] == "workers")
    assert hpa["spec"]["maxReplicas"] == 5

    project.run("destroy")
    assert list(project.manifests.rglob("*.yaml")) == []


def test_rendered_manifests_pass_strict_schema_validation(project):
    project.run("up")
    files = sorted(str(f) for f in project.manifests.rglob("*.yaml"))
    assert files
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version", KUBERNETES_VERSION, *files],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_rendered_manifests_hold_every_resource_the_mocks_build(project, run_stack):
    from tests.stacks import stack_values

    mocks = run_stack(stack_values("local"), "local")
    declared = [r for r in mocks.resources if r.typ.startswith("kubernetes:") and "providers" not in r.typ]
    project.run("up")
    rendered = _manifests(project)
    assert Counter(r.typ.rsplit(":", 1)[1] for r in declared) == Counter(d["kind"] for d in rendered)
    # Explicitly named objects keep their names; auto-named ones (settings ConfigMaps) get a suffix.
    explicit = {(r.typ.rsplit(":", 1)[1], r.inputs["metadata"]["name"]) for r in declared
                if not r.inputs["metadata"]["name"].endswith("-abcd1234")}
    assert explicit <= {(d["kind"], d["metadata"]["name"]) for d in rendered}


def test_config_error_is_one_line_without_traceback(project):
    def break_it(config):
        config["agent-platform:clusters"][0]["autoscaling"]["max_instances"] = 0

    project.edit("local", break_it)
    import engine  # noqa: F401  (on sys.path via conftest)
    from pulumi.automation.errors import CommandError

    with pytest.raises(CommandError) as caught:
        project.run("preview")
    text = str(caught.value)
    assert "stacks/Pulumi.local.yaml: agent-platform:clusters.workers.autoscaling" in text
    assert "max_instances (0) must be >= min_instances (1)" in text or "max_instances" in text
    assert "Traceback" not in text
