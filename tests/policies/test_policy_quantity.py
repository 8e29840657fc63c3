"""Kubernetes quantity parsing: the comparisons container-resources relies on."""

from fractions import Fraction

import pytest

from agent_policies.quantity import parse_quantity
from tests.quantity_cases import INVALID, NEGATIVE, VALID


@pytest.mark.parametrize("text, value", VALID + NEGATIVE)
def test_shared_table_parses(text, value):
    """The pack's copy of the grammar gives the same values as components/quantity.py."""
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", INVALID)
def test_shared_table_rejects(text):
    with pytest.raises(ValueError):
        parse_quantity(text)


@pytest.mark.parametrize(
    "text, value",
    [
        ("500m", Fraction(1, 2)),
        ("1", Fraction(1)),
        ("1000m", Fraction(1)),
        ("0.1", Fraction(1, 10)),
        ("100m", Fraction(1, 10)),
        (".5", Fraction(1, 2)),
        ("+2", Fraction(2)),
        ("250u", Fraction(250, 10**6)),
        ("10n", Fraction(10, 10**9)),
        ("1k", Fraction(1000)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("5e-1", Fraction(1, 2)),
        ("1E", Fraction(10**18)),  # a bare E is the exa suffix, not an exponent
        ("2M", Fraction(2 * 10**6)),
        ("3G", Fraction(3 * 10**9)),
        ("1Ki", Fraction(1024)),
        ("512Mi", Fraction(512 * 2**20)),
        ("1Gi", Fraction(2**30)),
        ("1.5Gi", Fraction(3 * 2**29)),
        (2, Fraction(2)),
        (0.5, Fraction(1, 2)),
        (0.1, Fraction(1, 10)),  # a float stays exact
    ],
)
def test_parses(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "smaller, larger",
    [("500m", "1"), ("512Mi", "1Gi"), ("1G", "1Gi"), ("953Mi", "1G"), ("1e2", "1k"), ("0.25", "300m")],
)
def test_orders_across_units(smaller, larger):
    assert parse_quantity(smaller) < parse_quantity(larger)


@pytest.mark.parametrize(
    "equal_a, equal_b", [("1Gi", "1024Mi"), ("1", "1000m"), ("1k", "1e3"), ("0.5", "500m"), ("1Mi", "1024Ki")]
)
def test_equal_across_units(equal_a, equal_b):
    assert parse_quantity(equal_a) == parse_quantity(equal_b)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1 Gi", "1KB", "Mi", "1ki", "1e", "--1", True, None, [], "1mi"])
def test_rejects_what_is_not_a_quantity(bad):
    with pytest.raises(ValueError):
        parse_quantity(bad)
