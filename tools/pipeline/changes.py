"""What one engine operation means for a reviewer: the steps, the policy violations, the errors.

`Outcome.from_events` reads the engine's structured events (automation `EngineEvent`s, the same
objects `EngineEvent.from_json` makes from an `--event-log` line), so nothing here parses text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

# Ops as the engine names them, grouped the way `pulumi preview` counts them: a replacement is
# one "replace" whatever its create/delete halves are called.
CREATE_OPS = {"create", "import"}
UPDATE_OPS = {"update"}
REPLACE_OPS = {"replace", "create-replacement", "import-replacement"}
DELETE_OPS = {"delete"}
KINDS = ("create", "update", "replace", "delete")


def _op(value: Any) -> str:
    return getattr(value, "value", value) or ""


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One property of a step: `spec.replicas`, and whether changing it forces a replacement."""

    path: str
    kind: str  # add, update, delete (the engine's DiffKind without "-replace")
    replaces: bool
    old: Any = None
    new: Any = None


@dataclasses.dataclass(frozen=True)
class Step:
    """One resource the operation creates, updates, replaces or deletes."""

    kind: str  # create | update | replace | delete | refresh
    urn: str
    type: str
    object: str  # `Deployment agents-dev/workers`, or the Pulumi name when it is not a k8s object
    fields: tuple[FieldChange, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Violation:
    """A policy pack's finding, at the enforcement level the stack's policy config gave it."""

    policy: str
    level: str  # advisory | mandatory | remediate | disabled
    resource: str  # the object it names, or "stack" for a stack policy without a resource
    message: str

    @property
    def blocking(self) -> bool:
        return self.level == "mandatory"


def object_name(type_: str, urn: str, state: Any | None) -> str:
    """`Kind namespace/name` of a Kubernetes object from its state, else the Pulumi name."""
    logical = urn.rsplit("::", 1)[-1]
    if not type_.startswith("kubernetes:") or type_.startswith("pulumi:providers"):
        return f"{type_.rsplit(':', 1)[-1]} {logical}"
    props: dict[str, Any] = {}
    for attr in ("outputs", "inputs"):
        value = getattr(state, attr, None) if state is not None else None
        if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
            props = value
            break
    meta = props.get("metadata") or {}
    kind = props.get("kind") or type_.rsplit(":", 1)[-1]
    name = meta.get("name") if isinstance(meta.get("name"), str) else logical
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def value_at(props: Any, path: str) -> Any:
    """The value at an engine property path (`spec.template.spec.containers[0].image`,
    `metadata.labels["app.kubernetes.io/name"]`); None where it does not exist."""
    node = props
    for part in split_path(path):
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def split_path(path: str) -> list[str | int]:
    """`a.b[0]["c.d"]` -> ["a", "b", 0, "c.d"] (the engine's resource.PropertyPath syntax)."""
    parts: list[str | int] = []
    i, word = 0, ""
    while i < len(path):
        ch = path[i]
        if ch == ".":
            if word:
                parts.append(word)
            word = ""
        elif ch == "[":
            if word:
                parts.append(word)
            word = ""
            end = path.index("]", i)
            inner = path[i + 1:end]
            if inner.startswith('"'):
                # A quoted key may itself contain "]": find the closing quote first.
                close = path.index('"]', i + 2)
                parts.append(path[i + 2:close])
                end = close + 1
            else:
                parts.append(int(inner))
            i = end
        else:
            word += ch
        i += 1
    if word:
        parts.append(word)
    return parts


def _fields(meta: Any) -> tuple[FieldChange, ...]:
    old = getattr(meta.old, "inputs", None) if meta.old is not None else None
    new = getattr(meta.new, "inputs", None) if meta.new is not None else None
    detailed = meta.detailed_diff or {}
    changes = []
    for path, diff in sorted(detailed.items()):
        kind = _op(diff.diff_kind)
        changes.append(FieldChange(path, kind.removesuffix("-replace"), kind.endswith("-replace"),
                                   value_at(old, path), value_at(new, path)))
    if not changes:
        # Providers without a detailed diff still name the changed top-level keys.
        for key in meta.diffs or meta.keys or []:
            changes.append(FieldChange(key, "update", key in (meta.keys or []) and _op(meta.op) in REPLACE_OPS,
                                       value_at(old, key), value_at(new, key)))
    return tuple(changes)


@dataclasses.dataclass
class Outcome:
    """The steps, violations and errors of one preview or update of one stack."""

    stack: str
    steps: list[Step]
    violations: list[Violation]
    errors: list[str]
    failed: bool = False
    operation: str = "preview"  # or "update"

    @classmethod
    def from_events(cls, stack: str, events: Iterable[Any], failed: bool = False,
                    operation: str = "preview") -> Outcome:
        steps: dict[str, Step] = {}
        raw_violations: list[Any] = []
        errors: list[str] = []
        for event in events:
            pre = getattr(event, "resource_pre_event", None)
            if pre is not None:
                meta = pre.metadata
                op = _op(meta.op)
                if op == "delete-replaced" and meta.urn not in steps:
                    op = "replace"  # delete-before-replace announces the delete first
                kind = _kind(op)
                if kind is None:
                    continue
                # A replaced or deleted object is named as it was (its auto-name changes).
                prefer_old = kind in ("replace", "delete") and meta.old is not None
                state = meta.old if prefer_old or meta.new is None else meta.new
                step = Step(kind, meta.urn, meta.type, object_name(meta.type, meta.urn, state), _fields(meta))
                if meta.urn in steps and kind != "replace":
                    continue
                steps[meta.urn] = step
            policy = getattr(event, "policy_event", None)
            if policy is not None:
                raw_violations.append(policy)
            diag = getattr(event, "diagnostic_event", None)
            if diag is not None and diag.severity == "error":
                text = _plain(diag.message)
                if text and text not in errors:
                    errors.append(text)
        # Resource policies run before the engine announces the step: name objects at the end.
        violations = []
        for policy in raw_violations:
            urn = policy.resource_urn
            step = steps.get(urn or "")
            resource = step.object if step is not None else (urn.rsplit("::", 1)[-1] if urn else "stack")
            violations.append(Violation(policy.policy_name, policy.enforcement_level, resource,
                                        _finding(policy.message)))
        return cls(stack, list(steps.values()), violations, errors, failed, operation)

    def of_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps if s.kind == kind]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of_kind(kind)) for kind in KINDS}

    @property
    def blocking(self) -> list[Violation]:
        return [v for v in self.violations if v.blocking]

    @property
    def changed(self) -> bool:
        return any(self.counts().values())

    @property
    def ok(self) -> bool:
        """Green: the engine succeeded and no mandatory policy failed."""
        return not self.failed and not self.blocking and not self.errors


def _kind(op: str) -> str | None:
    if op in CREATE_OPS:
        return "create"
    if op in UPDATE_OPS:
        return "update"
    if op == "replace":
        return "replace"
    if op in DELETE_OPS:
        return "delete"
    return None  # same, read, refresh and the halves of a replacement


def _finding(message: str) -> str:
    """The violation itself: the engine puts the policy's description on the first line."""
    lines = [line for line in _plain(message).splitlines() if line.strip()]
    return " ".join(lines[1:] if len(lines) > 1 else lines)


def _plain(message: str) -> str:
    """Engine messages carry colour directives (`<{%reset%}>`) even with color=never."""
    import re

    return re.sub(r"<\{%[a-z]*%\}>", "", message or "").strip()
