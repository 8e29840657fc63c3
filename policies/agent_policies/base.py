"""Glue between pulumi_policy's callbacks and the rules of this pack.

A rule is written against plain data (`K8sObject`, settings with defaults applied). The wrappers
here give it the exact `(args, report_violation)` signature CrossGuard calls, apply the type
filter and the `exemptions` config, and keep the function importable on its own so tests call it
directly with fake args.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)

from .config import is_exempt, read_config, schema_for
from .k8s import K8sObject

Report = Callable[[str], None]
ResourceRule = Callable[[K8sObject, dict, Report], None]


def resource_rule(policy_name: str, types: Iterable[str]) -> Callable[[ResourceRule], Callable]:
    """Decorate `rule(obj, settings, report)` into a CrossGuard resource validation."""
    wanted = frozenset(types)

    def decorate(rule: ResourceRule) -> Callable:
        @functools.wraps(rule)
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            if args.resource_type not in wanted:
                return
            settings = read_config(policy_name, args.get_config())
            obj = K8sObject.of(args)
            if is_exempt(settings, obj.identities()):
                return
            rule(obj, settings, lambda message: report_violation(message))

        validate.policy_name = policy_name  # type: ignore[attr-defined]
        return validate

    return decorate


@dataclass
class StackContext:
    """What a stack rule gets: the stack's Kubernetes objects, its settings and a reporter."""

    objects: list[K8sObject]
    settings: dict
    _report_violation: Callable[..., None]
    reported: list[str] = field(default_factory=list)

    def exempt(self, obj: K8sObject) -> bool:
        return is_exempt(self.settings, obj.identities())

    def report(self, obj: K8sObject | None, message: str) -> None:
        self.reported.append(message)
        if obj is not None and obj.urn:
            self._report_violation(message, obj.urn)
        else:
            self._report_violation(message)

    def of_type(self, *types: str) -> list[K8sObject]:
        return [o for o in self.objects if o.resource_type in types]


StackRule = Callable[[StackContext], None]


def stack_rule(policy_name: str) -> Callable[[StackRule], Callable]:
    """Decorate `rule(ctx)` into a CrossGuard stack validation."""

    def decorate(rule: StackRule) -> Callable:
        @functools.wraps(rule)
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            settings = read_config(policy_name, args.get_config())
            objects = [
                K8sObject.of(r) for r in args.resources if str(r.resource_type).startswith("kubernetes:")
            ]
            rule(StackContext(objects, settings, report_violation))

        validate.policy_name = policy_name  # type: ignore[attr-defined]
        return validate

    return decorate


def _policy(kind: type, validate: Callable, description: str, remediation: str, severity: Severity):
    name = validate.policy_name  # type: ignore[attr-defined]
    return kind(
        name=name,
        description=description,
        validate=validate,
        config_schema=schema_for(name),
        severity=severity,
        remediation_steps=remediation,
    )


def resource_policy(
    validate: Callable, description: str, remediation: str, severity: Severity = Severity.MEDIUM
) -> ResourceValidationPolicy:
    return _policy(ResourceValidationPolicy, validate, description, remediation, severity)


def stack_policy(
    validate: Callable, description: str, remediation: str, severity: Severity = Severity.MEDIUM
) -> StackValidationPolicy:
    return _policy(StackValidationPolicy, validate, description, remediation, severity)
