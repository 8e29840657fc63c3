"""Drift: what a refresh found different from what the stack declares, object by object.

The evidence is one `pulumi preview --refresh --expect-no-changes`: the engine reads every live
object (in memory: the state is not written, so a nightly job changes nothing), then diffs the
program against what it read. Every step it would take is drift: an update names the fields
someone changed, a create an object someone deleted, a replace a change to an immutable field.
"""

from __future__ import annotations

import dataclasses

from tools.pipeline.changes import Outcome
from tools.pipeline.report import _code, value


@dataclasses.dataclass(frozen=True)
class Drifted:
    """One field of one object whose live value is not the declared one."""

    object: str
    type: str
    field: str  # "(whole object)" when the object is gone
    declared: object
    live: object


def drifted(outcome: Outcome) -> list[Drifted]:
    found = []
    for step in outcome.steps:
        if step.kind == "create":
            found.append(Drifted(step.object, step.type, "(whole object)", "declared", "deleted"))
        elif step.kind == "delete":
            found.append(Drifted(step.object, step.type, "(whole object)", "not declared", "exists"))
        else:
            for f in step.fields or ():
                found.append(Drifted(step.object, step.type, f.path, f.new, f.old))
            if not step.fields:
                found.append(Drifted(step.object, step.type, "(unknown field)", None, None))
    return sorted(found, key=lambda d: (d.object, d.field))


def markdown(outcome: Outcome) -> str:
    items = drifted(outcome)
    if outcome.failed and not items:
        lines = [f"### ❌ `{outcome.stack}`: the drift check itself failed", ""]
        lines += [f"- {e}" for e in outcome.errors] or ["- see the job log"]
        return "\n".join(lines) + "\n"
    if not items:
        return f"### ✅ `{outcome.stack}`: no drift: every object matches the stack\n"
    objects = len({d.object for d in items})
    lines = [f"### ❌ `{outcome.stack}`: {objects} object(s) drifted", "",
             "| object | field | declared | live |", "|---|---|---|---|"]
    for d in items:
        declared = d.declared if isinstance(d.declared, str) and d.field.startswith("(") else value(d.declared)
        live = d.live if isinstance(d.live, str) and d.field.startswith("(") else value(d.live)
        lines.append(f"| {_code(d.object)} | {_code(d.field)} | {declared} | {live} |")
    lines += ["", "`deploy` puts the declared values back, except a field another field manager now owns "
              "(a Server-Side Apply conflict, which `deploy` reports): hand the field back "
              "(`kubectl apply --server-side --force-conflicts` of the declared value, or remove the other "
              "manager's entry), or change the stack file to adopt the live value."]
    return "\n".join(lines) + "\n"
