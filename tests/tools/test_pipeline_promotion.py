"""tools/pipeline/promotion.py on the shipped stack files (read, never written) and on hostile ones."""

from __future__ import annotations

import difflib

import pytest

from components.config import validate_platform
from tests.stacks import ROOT
from tools.pipeline import promotion
from tools.pipeline.promotion import PromotionError, promote_text

STACKS = ROOT / "stacks"


def _text(stack: str) -> str:
    return (STACKS / f"Pulumi.{stack}.yaml").read_text()


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return list(zip(removed, added, strict=True))


def test_dev_to_staging_changes_exactly_the_travelling_lines():
    before = _text("staging")
    result = promote_text(_text("dev"), before, "stacks/Pulumi.dev.yaml", "stacks/Pulumi.staging.yaml")
    assert [(c.path, c.new) for c in result.changes] == [
        ("clusters.workers.image", "ghcr.io/acme/agents/worker:0.5.0-rc.1"),
        ("clusters.coordinators.image", "ghcr.io/acme/agents/coordinator:0.5.0-rc.1"),
        ("clusters.coordinators.max_run_seconds", 600),
        ("clusters.specialists.image", "ghcr.io/acme/agents/specialist:0.5.0-rc.1"),
    ]
    # Every other line, comments and flow-style lists included, is byte for byte the same.
    assert _changed_lines(before, result.text) == [
        ("      image: ghcr.io/acme/agents/worker:0.4.2", "      image: ghcr.io/acme/agents/worker:0.5.0-rc.1"),
        (
            "      image: ghcr.io/acme/agents/coordinator:0.4.2",
            "      image: ghcr.io/acme/agents/coordinator:0.5.0-rc.1",
        ),
        ("      max_run_seconds: 900", "      max_run_seconds: 600"),
        ("      image: ghcr.io/acme/agents/specialist:0.4.2", "      image: ghcr.io/acme/agents/specialist:0.5.0-rc.1"),
    ]
    assert result.text.startswith("# yaml-language-server: $schema=schema.json\n# Production rehearsal")
    # dev declares no routes: staging keeps its own (consistent hashing for coordinators).
    assert any("declares no routes" in n for n in result.notes)
    validate_platform(promotion.plain_values(promotion.parse(result.text, "t")), "staging")


def test_environment_specific_values_never_travel():
    source = _text("staging").replace("replicas: 2", "replicas: 7").replace("agents-staging", "agents-elsewhere")
    result = promote_text(source, _text("prod"), "s", "p")
    travelled = {c.path.rsplit(".", 1)[-1] for c in result.changes}
    assert travelled <= {
        "image",
        "capabilities",
        "max_run_seconds",
        "default_deadline_seconds",
        *promotion.ROUTE_FIELDS,
    }
    target = promotion.plain_values(promotion.parse(result.text, "p"))
    original = promotion.plain_values(promotion.parse(_text("prod"), "p"))
    for key in ("namespace", "environment", "kubernetes", "backup", "monitoring", "quota"):
        assert target.get(key) == original.get(key), key
    for got, was in zip(target["clusters"], original["clusters"], strict=True):
        for key in ("replicas", "resources", "autoscaling", "disruption_budget", "env", "secret_env"):
            assert got.get(key) == was.get(key), (got["name"], key)


def test_route_settings_travel_by_route_name_and_path_prefixes_stay():
    source = _text("staging").replace("retry: {max_attempts: 2}", "retry: {max_attempts: 3}")
    target = _text("staging").replace("path_prefix: /v1/tools", "path_prefix: /tools")
    result = promote_text(source, target, "s", "t")
    assert [(c.path, c.old, c.new) for c in result.changes] == [
        ("routes.specialists.retry", {"max_attempts": 2}, {"max_attempts": 3})
    ]
    assert "path_prefix: /tools" in result.text and "retry: {max_attempts: 3}" in result.text


def test_a_value_the_source_leaves_to_its_default_travels_as_the_default():
    source = _text("staging").replace("      max_run_seconds: 900\n", "")
    result = promote_text(source, _text("staging"), "s", "t")
    assert [(c.path, c.old, c.new) for c in result.changes] == [("clusters.coordinators.max_run_seconds", 900, None)]
    assert "max_run_seconds: 900" not in result.text


def test_clusters_only_on_one_side_are_reported_not_invented():
    source = _text("dev").replace("name: specialists", "name: reviewers")
    result = promote_text(source, _text("staging"), "dev", "staging")
    assert any("'reviewers' is not declared in staging" in n for n in result.notes)
    assert any("'specialists' exists only in staging" in n for n in result.notes)
    assert "reviewers" not in result.text


def test_digests_travel_exactly():
    digest = "ghcr.io/acme/agents/worker@sha256:" + "ab" * 32
    source = _text("staging").replace("ghcr.io/acme/agents/worker:0.4.2", digest)
    result = promote_text(source, _text("prod"), "s", "p")
    assert f"image: {digest}\n" in result.text


@pytest.mark.parametrize(
    "text, message",
    [
        ("config: [1, 2", "s: not valid YAML (line"),
        ("just: text\n", "s: no `config:` mapping"),
        (
            "config:\n  agent-platform:clusters: {workers: 1}\n  agent-platform:gateway: {image: a:1}\n",
            "s: agent-platform:clusters must be a list",
        ),
        (
            "config:\n  agent-platform:clusters: [{image: a:1}]\n  agent-platform:gateway: {image: a:1}\n",
            "s: agent-platform:clusters[0].name is required",
        ),
        (
            "config:\n  agent-platform:clusters: [{name: a}, {name: a}]\n  agent-platform:gateway: {}\n",
            "two items are named 'a'",
        ),
        ("config:\n  agent-platform:clusters: [{name: a}]\n", "s: agent-platform:gateway must be a mapping"),
    ],
)
def test_hostile_source_files_are_one_clear_error(text, message):
    with pytest.raises(PromotionError) as err:
        promote_text(text, _text("staging"), "s", "t")
    assert message in str(err.value)
