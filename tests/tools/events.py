"""Engine events in the wire format of the engine's event log (`--event-log`, one JSON object a
line), parsed by the Automation API's own `EngineEvent.from_json` as the pipeline receives them."""

from __future__ import annotations

from typing import Any

from pulumi.automation.events import EngineEvent

PROJECT_URN = "urn:pulumi:{stack}::agent-platform::"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::agent-platform::agent-platform:index:Platform${type_}::{name}"


def k8s_state(type_: str, urn_: str, kind: str, name: str, namespace: str | None, **body: Any) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    props = {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, **body}
    return {"type": type_, "urn": urn_, "id": f"{namespace}/{name}", "parent": "", "provider": "",
            "custom": True, "inputs": props, "outputs": props}


def step(op: str, type_: str, urn_: str, old: dict | None = None, new: dict | None = None,
         detailed: dict[str, str] | None = None, sequence: int = 1) -> EngineEvent:
    metadata: dict[str, Any] = {"op": op, "urn": urn_, "type": type_, "provider": ""}
    if old is not None:
        metadata["old"] = old
    if new is not None:
        metadata["new"] = new
    if detailed:
        metadata["detailedDiff"] = {path: {"diffKind": kind, "inputDiff": True} for path, kind in detailed.items()}
        metadata["diffs"] = sorted({path.split(".")[0].split("[")[0] for path in detailed})
    return EngineEvent.from_json({"sequence": sequence, "timestamp": 0, "resourcePreEvent": {"metadata": metadata}})


def policy(name: str, level: str, message: str, urn_: str | None = None, sequence: int = 1) -> EngineEvent:
    event = {"message": message, "color": "never", "policyName": name,
             "policyPackName": "agent-platform-policies", "policyPackVersion": "0.1.0",
             "policyPackVersionTag": "0.1.0", "enforcementLevel": level}
    if urn_:
        event["resourceUrn"] = urn_
    return EngineEvent.from_json({"sequence": sequence, "timestamp": 0, "policyEvent": event})


def diagnostic(message: str, severity: str = "error") -> EngineEvent:
    return EngineEvent.from_json({"sequence": 1, "timestamp": 0, "diagnosticEvent": {
        "message": message, "color": "never", "severity": severity}})
