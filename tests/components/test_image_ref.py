"""components/image_ref.py over the shared table (tests/image_cases.py), and what it feeds."""

from __future__ import annotations

import pytest

from components.image_ref import pinning_problem, split_image
from components.labels import image_version
from tests.image_cases import CASES


@pytest.mark.parametrize("image,parts,problem", CASES)
def test_split_and_pinning(image, parts, problem):
    assert split_image(image) == parts
    assert pinning_problem(image) == problem


def test_version_label_is_the_tag_or_the_short_digest():
    assert image_version("ghcr.io/acme/agent:1.4.2") == "1.4.2"
    assert image_version("localhost:5000/agent") is None
    assert image_version("ghcr.io/acme/agent:1.4@sha256:" + "ab" * 32) == "ab" * 6
