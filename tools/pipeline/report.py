"""Markdown for a pull request comment or a job summary: one section per stack."""

from __future__ import annotations

import json
from typing import Any

from tools.pipeline.changes import Outcome, Step, Violation

# Long creates lists (a first deploy) fold away; replaces and deletes are always shown.
FOLD_AFTER = 10
VALUE_WIDTH = 60


def _code(text: str) -> str:
    text = str(text).replace("\n", " ").replace("|", "\\|")
    return f"`{text}`" if "`" not in text else f"``{text}``"


def value(v: Any) -> str:
    """A property value in a table cell: JSON, shortened, never breaking the table."""
    if v is None:
        return "(unset)"
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    if len(text) > VALUE_WIDTH:
        text = text[: VALUE_WIDTH - 1] + "…"
    return _code(text)


def _fields(step: Step) -> str:
    parts = []
    for f in step.fields:
        mark = " (forces replacement)" if f.replaces else ""
        parts.append(f"{_code(f.path)}{mark}")
    return ", ".join(parts) or "—"


def _step_rows(steps: list[Step]) -> list[str]:
    rows = ["| change | object | Pulumi type | fields |", "|---|---|---|---|"]
    for step in steps:
        rows.append(f"| {step.kind} | {_code(step.object)} | {_code(step.type)} | {_fields(step)} |")
    return rows


def _violation_rows(violations: list[Violation]) -> list[str]:
    rows = ["| level | policy | resource | message |", "|---|---|---|---|"]
    order = {"mandatory": 0, "remediate": 1, "advisory": 2}
    for v in sorted(violations, key=lambda v: (order.get(v.level, 3), v.policy, v.resource)):
        message = v.message.replace("\n", " ").replace("|", "\\|")
        rows.append(f"| **{v.level}** | {_code(v.policy)} | {_code(v.resource)} | {message} |")
    return rows


def headline(outcome: Outcome) -> str:
    counts = outcome.counts()
    changes = ", ".join(f"{n} to {kind}" for kind, n in counts.items() if n) or "no changes"
    mandatory = len(outcome.blocking)
    advisory = len(outcome.violations) - mandatory
    status = "passed" if outcome.ok else "FAILED"
    return (f"{'✅' if outcome.ok else '❌'} `{outcome.stack}`: {changes}; "
            f"policies: {mandatory} mandatory, {advisory} advisory violation(s); {outcome.operation} {status}")


def preview_markdown(outcome: Outcome) -> str:
    """The section of one stack: headline, errors, replaces/deletes/updates, creates, violations."""
    lines = [f"### {headline(outcome)}", ""]
    if outcome.errors:
        lines += ["**Errors**", ""] + [f"- {_code(e) if len(e) < 200 else e}" for e in outcome.errors] + [""]
    elif outcome.failed and not outcome.blocking:
        lines += ["**The engine failed without a diagnostic; see the job log.**", ""]
    shown = [s for s in outcome.steps if s.kind in ("replace", "delete", "update")]
    order = {"replace": 0, "delete": 1, "update": 2}
    shown.sort(key=lambda s: (order[s.kind], s.object))
    if shown:
        lines += _step_rows(shown) + [""]
    creates = sorted(outcome.of_kind("create"), key=lambda s: s.object)
    if creates:
        rows = _step_rows(creates)
        if len(creates) > FOLD_AFTER:
            lines += [f"<details><summary>{len(creates)} to create</summary>", ""] + rows + ["", "</details>", ""]
        else:
            lines += rows + [""]
    if outcome.violations:
        lines += ["**Policy violations**", ""] + _violation_rows(outcome.violations) + [""]
    return "\n".join(lines)


def document(title: str, sections: list[str]) -> str:
    return "\n".join([f"## {title}", "", *sections]).rstrip() + "\n"
