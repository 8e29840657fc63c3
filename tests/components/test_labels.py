"""components/labels.py: label values derived from what a stack declares."""

from __future__ import annotations

from components.labels import image_version


def test_version_label_is_the_tag_or_the_short_digest():
    assert image_version("ghcr.io/acme/agent:1.4.2") == "1.4.2"
    assert image_version("localhost:5000/agent") is None
    assert image_version("ghcr.io/acme/agent:1.4@sha256:" + "ab" * 32) == "ab" * 6
