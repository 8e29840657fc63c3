"""tools/pipeline/changes.py and report.py: what a reviewer reads from the engine's events."""

from __future__ import annotations

from tests.tools.events import diagnostic, k8s_state, policy, step, urn
from tools.pipeline import report
from tools.pipeline.changes import Outcome, split_path, value_at

DEPLOY = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"


def _deployment(stack, replicas, image="worker:1"):
    u = urn(stack, DEPLOY, "platform-workers")
    return u, k8s_state(DEPLOY, u, "Deployment", "workers", "agents-staging",
                        spec={"replicas": replicas, "template": {"spec": {"containers": [{"image": image}]}}})


def test_counts_each_replacement_once_and_names_what_forces_it():
    u, old = _deployment("staging", 2)
    cm = urn("staging", CONFIGMAP, "gateway-config")
    cm_old = k8s_state(CONFIGMAP, cm, "ConfigMap", "gateway-config", "agents-staging", data={"a": "1"})
    cm_new = k8s_state(CONFIGMAP, cm, "ConfigMap", "gateway-config", "agents-staging", data={"a": "2"})
    _, new = _deployment("staging", 3)
    events = [
        step("same", "kubernetes:core/v1:Namespace", urn("staging", "kubernetes:core/v1:Namespace", "ns")),
        step("update", DEPLOY, u, old, new, {"spec.replicas": "update"}),
        step("create-replacement", CONFIGMAP, cm, cm_old, cm_new, {"data": "update-replace"}),
        step("replace", CONFIGMAP, cm, cm_old, cm_new, {"data": "update-replace"}),
        step("delete-replaced", CONFIGMAP, cm, cm_old, cm_new),
    ]
    outcome = Outcome.from_events("staging", events)
    assert outcome.counts() == {"create": 0, "update": 1, "replace": 1, "delete": 0}
    (replaced,) = outcome.of_kind("replace")
    assert replaced.object == "ConfigMap agents-staging/gateway-config"
    assert [(f.path, f.replaces) for f in replaced.fields] == [("data", True)]
    (updated,) = outcome.of_kind("update")
    assert [(f.path, f.old, f.new) for f in updated.fields] == [("spec.replicas", 2, 3)]
    text = report.preview_markdown(outcome)
    assert "1 to update, 1 to replace" in text
    assert "| replace | `ConfigMap agents-staging/gateway-config` |" in text
    assert "`data` (forces replacement)" in text
    assert outcome.ok


def test_delete_before_replace_is_still_one_replace():
    u, old = _deployment("dev", 1)
    events = [step("delete-replaced", DEPLOY, u, old, old), step("replace", DEPLOY, u, old, old,
                                                                 {"spec.selector": "update-replace"}),
              step("create-replacement", DEPLOY, u, old, old)]
    outcome = Outcome.from_events("dev", events)
    assert outcome.counts()["replace"] == 1 and outcome.counts()["delete"] == 0


def test_mandatory_violation_closes_the_gate_advisory_does_not():
    u, new = _deployment("prod", 1)
    create = step("create", DEPLOY, u, None, new)
    advisory = Outcome.from_events("dev", [create, policy("production-replicas", "advisory", "too few", u)])
    assert advisory.ok and advisory.violations[0].resource == "Deployment agents-staging/workers"
    mandatory = Outcome.from_events("prod", [create, policy("production-replicas", "mandatory",
                                                            "Deployment workers runs 1 replica. Fix: ...", u)],
                                    failed=True)
    assert not mandatory.ok and [v.policy for v in mandatory.blocking] == ["production-replicas"]
    text = report.preview_markdown(mandatory)
    assert text.startswith("### ❌ `prod`: 1 to create; policies: 1 mandatory, 0 advisory")
    assert "| **mandatory** | `production-replicas` | `Deployment agents-staging/workers` |" in text


def test_stack_policy_without_resource_and_engine_error_are_reported():
    outcome = Outcome.from_events(
        "prod",
        [
            policy("namespace-default-deny", "mandatory", "Namespace agents has no default-deny NetworkPolicy"),
            diagnostic(
                "<{%reset%}>stacks/Pulumi.prod.yaml: agent-platform:gateway.replicas (1) must be >= 2 in prod"
                "<{%reset%}>\n"
            ),
            diagnostic("just a warning", severity="warning"),
        ],
        failed=True,
    )
    assert outcome.violations[0].resource == "stack"
    assert outcome.errors == ["stacks/Pulumi.prod.yaml: agent-platform:gateway.replicas (1) must be >= 2 in prod"]
    text = report.preview_markdown(outcome)
    assert "**Errors**" in text and "gateway.replicas (1)" in text and "warning" not in text


def test_many_creates_fold_but_stay_listed():
    events = []
    for i in range(12):
        u, new = _deployment("dev", 1)
        u = u + str(i)
        events.append(step("create", DEPLOY, u, None, {**new, "urn": u}))
    text = report.preview_markdown(Outcome.from_events("dev", events))
    assert "<details><summary>12 to create</summary>" in text
    assert text.count("| create |") == 12


def test_a_table_cell_never_breaks_the_table():
    assert report.value("a|b\nc") == "`a\\|b c`"
    assert report.value(None) == "(unset)"
    assert len(report.value("x" * 500)) < 70


def test_property_paths_as_the_engine_writes_them():
    assert split_path("spec.template.spec.containers[0].image") == [
        "spec",
        "template",
        "spec",
        "containers",
        0,
        "image",
    ]
    assert split_path('metadata.labels["app.kubernetes.io/name"]') == ["metadata", "labels", "app.kubernetes.io/name"]
    props = {"spec": {"containers": [{"image": "a"}]}, "metadata": {"labels": {"a.b/c": "x"}}}
    assert value_at(props, "spec.containers[0].image") == "a"
    assert value_at(props, 'metadata.labels["a.b/c"]') == "x"
    assert value_at(props, "spec.containers[3].image") is None


def test_a_violation_reported_before_its_step_still_names_the_object():
    # The engine runs resource policies before it announces the step (seen with the real engine).
    u, new = _deployment("local", 1, image="worker:latest")
    outcome = Outcome.from_events(
        "local",
        [
            policy(
                "image-pinned",
                "mandatory",
                "Container images are pinned.\nDeployment 'agents-local/workers': image uses ':latest'. Fix: pin it.\n",
                u,
            ),
            step("create", DEPLOY, u, None, new),
        ],
    )
    (violation,) = outcome.violations
    assert violation.resource == "Deployment agents-staging/workers"
    assert violation.message == "Deployment 'agents-local/workers': image uses ':latest'. Fix: pin it."
