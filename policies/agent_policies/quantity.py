"""Kubernetes resource quantities ("500m", "1", "512Mi", "1Gi", "1e3", "0.5"), compared exactly.

Follows the grammar of k8s.io/apimachinery/pkg/api/resource: a signed decimal number, then either
a binary SI suffix (Ki Mi Gi Ti Pi Ei), a decimal SI suffix (n u m "" k M G T P E) or a decimal
exponent (e3, E-2). Values are returned as Fractions so "0.1" and "100m" compare equal.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

_MULTIPLIERS: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

# The exponent alternative comes first and needs digits, so "1E" is one exa, "1E3" is 1000.
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$"
)


def parse_quantity(value: Any) -> Fraction:
    """Parse a quantity given as a string or a number; raise ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        # repr() gives the shortest decimal that round-trips, so 0.1 stays one tenth.
        return Fraction(repr(value))
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a quantity")
    m = _QUANTITY.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number = Fraction(m.group("number"))
    if m.group("exponent"):
        return number * Fraction(10) ** int(m.group("exponent")[1:])
    return number * _MULTIPLIERS[m.group("suffix") or ""]
