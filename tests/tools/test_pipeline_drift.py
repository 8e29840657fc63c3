"""tools/pipeline/drift.py: each drifted object and field, declared against live."""

from __future__ import annotations

from tests.tools.events import k8s_state, step, urn
from tools.pipeline import drift
from tools.pipeline.changes import Outcome

DEPLOY = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"


def test_each_drifted_field_with_declared_and_live_values():
    u = urn("dev", DEPLOY, "platform-workers")
    live = k8s_state(DEPLOY, u, "Deployment", "workers", "agents-dev", spec={"replicas": 4})
    declared = k8s_state(DEPLOY, u, "Deployment", "workers", "agents-dev", spec={"replicas": 1})
    svc = urn("dev", SERVICE, "platform-workers-svc")
    gone = k8s_state(SERVICE, svc, "Service", "workers", "agents-dev")
    outcome = Outcome.from_events("dev", [
        step("refresh", DEPLOY, u, live, live),
        step("update", DEPLOY, u, live, declared, {"spec.replicas": "update"}),
        step("create", SERVICE, svc, None, gone),
    ], failed=True)
    found = drift.drifted(outcome)
    assert [(d.object, d.field, d.declared, d.live) for d in found] == [
        ("Deployment agents-dev/workers", "spec.replicas", 1, 4),
        ("Service agents-dev/workers", "(whole object)", "declared", "deleted"),
    ]
    text = drift.markdown(outcome)
    assert "2 object(s) drifted" in text
    assert "| `Deployment agents-dev/workers` | `spec.replicas` | `1` | `4` |" in text


def test_no_drift():
    assert "no drift" in drift.markdown(Outcome.from_events("dev", [step("same", DEPLOY, urn("dev", DEPLOY, "a"))]))
