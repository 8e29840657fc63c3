"""The one table of Kubernetes quantity cases every parser in the project is held to.

The components' parser (components/quantity.py, and the stack schema's pattern built from it)
and the policy pack's own copy (policies/agent_policies/quantity.py, standalone by design) both
run over these cases; kubernetes.utils.parse_quantity is the reference for the values.
"""

from __future__ import annotations

from fractions import Fraction

# (text, value)
VALID: list[tuple[str, Fraction]] = [
    ("500m", Fraction(1, 2)),
    ("1", Fraction(1)),
    ("1000m", Fraction(1)),
    ("0.1", Fraction(1, 10)),
    ("100m", Fraction(1, 10)),
    (".5", Fraction(1, 2)),
    ("1.", Fraction(1)),
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
    ("4T", Fraction(4 * 10**12)),
    ("5P", Fraction(5 * 10**15)),
    ("1Ki", Fraction(1024)),
    ("512Mi", Fraction(512 * 2**20)),
    ("1Gi", Fraction(2**30)),
    ("1.5Gi", Fraction(3 * 2**29)),
    ("2Ti", Fraction(2 * 2**40)),
    ("1Pi", Fraction(2**50)),
    ("1Ei", Fraction(2**60)),
]

# Not quantities anywhere.
INVALID: list[str] = ["", "abc", "1.2.3", "1 Gi", "1KB", "Mi", "1ki", "1e", "--1", "1mi", "1e3Mi", "0x10", "1Gb"]

# Valid quantities the components refuse because resource values cannot be negative; the pack
# parses them (its rules compare, and a negative limit is reported by them).
NEGATIVE: list[tuple[str, Fraction]] = [("-1", Fraction(-1)), ("-500m", Fraction(-1, 2))]
