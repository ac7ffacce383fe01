"""Kubernetes quantities (`100m`, `0.5`, `128Mi`, `1G`, `1e3`) as Decimals.

A leaf: configuration validates the policy's requests and limits with it, and rules compare sizes
with it (`rules.base` re-exports `parse_quantity`). It imports nothing from the project.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
# Possessive quantifiers: a PR value of many digits must cost linear time, not quadratic.
_NUMBER = r"[+-]?(?:\d++(?:\.\d*+)?|\.\d++)"
_QUANTITY = re.compile(rf"^({_NUMBER})(?:([eE][+-]?\d++)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (`100m`, `0.5`, `128Mi`, `1G`, `1e3`, a YAML number) as a Decimal."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    number, exponent, suffix = m.groups()
    try:
        base = Decimal(number)
        return base * Decimal(f"1{exponent}") if exponent else base * _SUFFIX[suffix or ""]
    except InvalidOperation:
        return None
