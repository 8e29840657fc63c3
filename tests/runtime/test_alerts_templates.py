"""Annotation templates as Prometheus expands them, and the errors Prometheus would give."""

from __future__ import annotations

import pytest

from agent_runtime.alerts.templates import TemplateError, check_template, expand, expand_or_error

LABELS = {"route": "chat-eu", "instance": "gw-1.agents.svc:8080"}


@pytest.mark.parametrize(
    "template,value,expected",
    [
        ("{{ $labels.route | toUpper }}", 1, "CHAT-EU"),
        ("{{ toUpper $labels.route }}", 1, "CHAT-EU"),
        ("{{ $labels.route | toUpper | toLower }}", 1, "chat-eu"),
        ("{{ title \"backup source\" }}", 1, "Backup Source"),
        ("{{ $labels.instance | stripPort }}", 1, "gw-1.agents.svc"),
        ("{{ $labels.instance | stripDomain }}", 1, "gw-1:8080"),
        ("{{ reReplaceAll \"-(.*)\" \" ($1)\" $labels.route }}", 1, "chat (eu)"),
        ("{{ printf \"%.2f\" $value }}", 0.12345, "0.12"),
        ("{{ printf \"%s/%d\" $labels.route 3 }}", 1, "chat-eu/3"),
        ("{{ .Labels.route }} {{ .Value }}", 2.5, "chat-eu 2.5"),
        ("{{ $value | humanize1024 }}", 2048, "2ki"),
        ("{{ $value | humanizeDuration }}", float("inf"), "+Inf"),
        ("{{ $value | humanizePercentage }}", 0.5, "50%"),
        ("{{ $value | humanizeTimestamp }}", 0, "1970-01-01 00:00:00 +0000 UTC"),
        ("a {{- \" b \" -}} c", 1, "a b c"),
        ("{{/* a comment */}}x", 1, "x"),
        ("{{ $externalURL }}", 1, "http://am"),
    ],
)
def test_expands_like_prometheus(template: str, value: float, expected: str) -> None:
    assert expand(template, LABELS, value, external_url="http://am") == expected


@pytest.mark.parametrize(
    "template,error",
    [
        ("{{ $value | nosuch }}", 'function "nosuch" not defined'),
        ("{{ $value ", "unclosed action"),
        ("{{ if $value }}x{{ end }}", "not supported by the in-process evaluator"),
        ("{{ query \"up\" | first }}", "needs Prometheus' query engine"),
        ("{{ $nope }}", "undefined variable"),
        ("{{ $value | }}", "missing command"),
        ("{{ $value $value }}", "can't give argument to non-function"),
    ],
)
def test_templates_that_cannot_expand_are_refused(template: str, error: str) -> None:
    with pytest.raises(TemplateError, match=error.replace("(", r"\(")):
        check_template(template)


def test_execution_errors_render_as_prometheus_does() -> None:
    check_template("{{ $labels.route | humanize }}")  # parses; fails only on this alert's data
    text, error = expand_or_error("x {{ $labels.route | humanize }}", LABELS, 1.0)
    assert text == f"<error expanding template: {error}>" and "can't convert" in (error or "")
    assert expand_or_error("{{ $value | toUpper }}", LABELS, 1.0)[1] == (
        "wrong type for value; expected string; got float64"
    )
