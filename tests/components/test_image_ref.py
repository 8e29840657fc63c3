"""components/image_ref.py over the shared table (tests/image_cases.py), and what it feeds."""

from __future__ import annotations

import pytest

from components.image_ref import pinning_problem, split_image
from tests.image_cases import CASES


@pytest.mark.parametrize("image,parts,problem", CASES)
def test_split_and_pinning(image, parts, problem):
    assert split_image(image) == parts
    assert pinning_problem(image) == problem
