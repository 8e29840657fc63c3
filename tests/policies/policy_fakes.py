"""Fake CrossGuard args for calling the rules as plain functions.

Attribute names and `get_config()` match pulumi_policy's ResourceValidationArgs,
StackValidationArgs and PolicyResource (test_policy_unknowns.py checks that against the real ones).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(TESTS_DIR))
POLICIES_DIR = os.path.join(ROOT, "policies")


@dataclass
class FakeResourceArgs:
    """Stands in for pulumi_policy.ResourceValidationArgs (same attribute names, same get_config)."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str
    config: Mapping[str, Any] | None = None
    opts: Any = None
    provider: Any = None
    stack_tags: Mapping[str, str] = field(default_factory=dict)

    def get_config(self) -> Mapping[str, Any]:
        return self.config or {}

    def not_applicable(self, reason: str | None = None) -> None:
        raise AssertionError(f"not_applicable({reason!r}) is not used by this pack")


@dataclass
class FakeResource:
    """Stands in for pulumi_policy.PolicyResource inside StackValidationArgs.resources."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str
    opts: Any = None
    provider: Any = None
    parent: Any = None
    dependencies: list = field(default_factory=list)
    property_dependencies: dict = field(default_factory=dict)


@dataclass
class FakeStackArgs:
    """Stands in for pulumi_policy.StackValidationArgs."""

    resources: list
    config: Mapping[str, Any] | None = None
    stack_tags: Mapping[str, str] = field(default_factory=dict)

    def get_config(self) -> Mapping[str, Any]:
        return self.config or {}

    def not_applicable(self, reason: str | None = None) -> None:
        raise AssertionError(f"not_applicable({reason!r}) is not used by this pack")


class Violations:
    """A report_violation callback that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, message: str, urn: str | None = None) -> None:
        assert isinstance(message, str) and message, "a violation needs a message"
        self.calls.append((message, urn))

    @property
    def messages(self) -> list[str]:
        return [m for m, _ in self.calls]


def urn_for(resource_type: str, name: str) -> str:
    return f"urn:pulumi:test::agent-platform::{resource_type}::{name}"


def run_resource(validate: Callable, obj: dict, config: Mapping[str, Any] | None = None) -> list[str]:
    """Run a resource validation on one {type, name, props} object; return the messages."""
    report = Violations()
    validate(
        FakeResourceArgs(
            resource_type=obj["type"],
            props=obj["props"],
            urn=urn_for(obj["type"], obj["name"]),
            name=obj["name"],
            config=config,
        ),
        report,
    )
    return report.messages


def run_stack(
    validate: Callable, objs: list[dict], config: Mapping[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    """Run a stack validation on {type, name, props} objects; return (message, urn) pairs."""
    report = Violations()
    resources = [
        FakeResource(o["type"], o["props"], urn_for(o["type"], o["name"]), o["name"]) for o in objs
    ]
    validate(FakeStackArgs(resources=resources, config=config), report)
    return report.calls
