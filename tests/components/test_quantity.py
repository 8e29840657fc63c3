"""components/quantity.py and the stack schema's pattern, over the shared table (tests/quantity_cases.py).

tests/policies/test_policy_quantity.py holds the policy pack's copy to the same table.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

import pytest
from kubernetes.utils import parse_quantity as k8s_parse

from components.config import PlatformConfig
from components.quantity import PATTERN, parse_quantity
from tests.quantity_cases import INVALID, NEGATIVE, VALID


def _schema_pattern() -> str:
    schema = PlatformConfig.model_json_schema()
    return schema["$defs"]["Resources"]["properties"]["cpu"]["pattern"]


@pytest.mark.parametrize("text,value", VALID)
def test_valid_quantities_have_one_value_everywhere(text: str, value: Fraction) -> None:
    assert Fraction(Decimal(str(k8s_parse(text)))) == value, "the table agrees with Kubernetes' client"
    assert parse_quantity(text) == value
    assert re.fullmatch(_schema_pattern(), text)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_quantities_are_refused_everywhere(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)
    assert not re.fullmatch(_schema_pattern(), text)


@pytest.mark.parametrize("text,value", NEGATIVE)
def test_negative_quantities_parse_in_the_pack_and_are_refused_as_resources(text: str, value: Fraction) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_quantity(text)


def test_the_schema_pattern_is_the_parser_grammar() -> None:
    assert _schema_pattern() == PATTERN
