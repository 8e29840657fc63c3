"""Kubernetes resource quantities ("500m", "1.5", "512Mi", "1Gi", "1e3"), parsed for comparison."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^(?P<number>[+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)(?P<suffix>[a-zA-Z]*)$")

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def parse_quantity(text: str | int | float) -> Decimal:
    """The value of a quantity in base units (cores or bytes); ValueError names what is wrong."""
    raw = str(text).strip()
    match = _QUANTITY.match(raw)
    if not match or match.group("suffix") not in _SUFFIXES:
        raise ValueError(
            f"{raw!r} is not a Kubernetes quantity (examples: 500m, 2, 512Mi, 1Gi)"
        )
    if "e" in match.group("number").lower() and match.group("suffix"):
        raise ValueError(f"{raw!r} mixes an exponent with a suffix")
    try:
        return Decimal(match.group("number")) * _SUFFIXES[match.group("suffix")]
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a Kubernetes quantity") from None
