"""components/labels.py: label values derived from what a stack declares."""

from __future__ import annotations

from components.labels import image_version


def test_version_label_is_the_tag_or_the_short_digest():
    assert image_version("ghcr.io/acme/agent:1.4.2") == "1.4.2"
    assert image_version("localhost:5000/agent") is None
    assert image_version("ghcr.io/acme/agent:1.4@sha256:" + "ab" * 32) == "ab" * 6


def test_a_long_image_tag_still_makes_a_valid_version_label():
    import re

    from components.labels import standard_labels

    tag = "a" * 62 + "-" + "b" * 7  # 70 characters; cut at 63 it would end in '-'
    value = standard_labels("workers", "agent", "prod", image_version(f"registry.local/agents/worker:{tag}"))[
        "app.kubernetes.io/version"]
    assert value == "a" * 62
    assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value) and len(value) <= 63
    assert "app.kubernetes.io/version" not in standard_labels("w", "agent", "prod", "___")
