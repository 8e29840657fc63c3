"""Kubernetes resource quantities ("500m", "1.5", "512Mi", "1Gi", "1e3", "250u"), parsed exactly.

The grammar of k8s.io/apimachinery/pkg/api/resource: a decimal number, then either a decimal
exponent (e3, E-2), a binary SI suffix (Ki Mi Gi Ti Pi Ei) or a decimal SI suffix
(n u m "" k M G T P E); "1E" is one exa, "1E3" is a thousand. `PATTERN` is the same grammar as
the stack schema's `pattern`, so editors and the parser agree. The policy pack, which must stay
standalone, has its own copy (policies/agent_policies/quantity.py); tests/quantity_cases.py is
the one table of cases both are held to, with kubernetes.utils.parse_quantity as the reference.

Resource values are never negative here, so a sign other than `+` is refused with its own message.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["PATTERN", "parse_quantity"]

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

# JSON-schema (ECMA) and Python regex at once. The exponent alternative comes first and needs
# digits, so "1E" falls through to the exa suffix.
PATTERN = (
    r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_QUANTITY = re.compile(PATTERN)


def parse_quantity(text: str | int | float) -> Fraction:
    """The value of a quantity in base units (cores or bytes); ValueError names what is wrong."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 1Gi)")
    raw = repr(text) if isinstance(text, float) else str(text).strip()
    if raw.startswith("-") and _QUANTITY.match(raw[1:]):
        raise ValueError(f"{raw!r} is negative; resource quantities must be >= 0")
    match = _QUANTITY.match(raw)
    if not match:
        raise ValueError(f"{raw!r} is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 1Gi)")
    number, suffix = Fraction(match.group(1)), match.group(3) or ""
    if suffix not in _MULTIPLIERS:  # an exponent: e3, E-2
        return number * Fraction(10) ** int(suffix[1:])
    return number * _MULTIPLIERS[suffix]
