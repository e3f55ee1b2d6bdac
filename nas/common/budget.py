"""FLOP budgets as users type them: ``4GFLOPs``, ``600M``, ``4e9``, ``3.5-4GFLOPs``.

FLOPs are multiply-adds (``FlopCounterMode`` total / 2; "Conventions" in ARCHITECTURE.md). A
budget is an upper bound, or a window ``low-high`` that a candidate's FLOPs must lie in (both
ends inclusive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nas.common.errors import UserError
from nas.common.units import format_flops

__all__ = ["ACCEPTED", "Budget", "format_flops", "parse_budget"]

_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUMBER = r"(\d{1,15}(?:\.\d{0,15})?|\.\d{1,15})(?:e\+?(\d{1,2}))?"
_UNIT = r"([kmgt]?)\s*(?:flops?|macs?)?"
_ONE = re.compile(rf"^\s*{_NUMBER}\s*{_UNIT}\s*$", re.IGNORECASE)
_RANGE = re.compile(rf"^\s*{_NUMBER}\s*{_UNIT}\s*(?:-|\.\.|to)\s*{_NUMBER}\s*{_UNIT}\s*$", re.IGNORECASE)

ACCEPTED = "4GFLOPs, 4 GFLOPs, 600MFLOPs, 600M, 4G, 4e9, or a window like 3.5-4GFLOPs"


@dataclass(frozen=True)
class Budget:
    """FLOPs (multiply-adds) a candidate may have: ``low <= flops <= high``."""

    high: float
    low: float = 0.0

    def contains(self, flops: float) -> bool:
        return self.low <= flops <= self.high

    @property
    def is_window(self) -> bool:
        return self.low > 0

    def flag(self) -> str:
        """The budget as ``--budget`` takes it, read back exactly: ``15-20MFLOPs``, ``4GFLOPs``,
        ``900MFLOPs-1.2GFLOPs`` (``str`` rounds to three digits for people)."""
        high_num, high_unit = _exact(self.high)
        if not self.is_window:
            return f"{high_num}{high_unit}FLOPs"
        low_num, low_unit = _exact(self.low)
        if low_unit == high_unit:
            return f"{low_num}-{high_num}{high_unit}FLOPs"
        return f"{low_num}{low_unit}FLOPs-{high_num}{high_unit}FLOPs"

    def __str__(self) -> str:
        if self.is_window:
            return f"{format_flops(self.low)} - {format_flops(self.high)}"
        return f"<= {format_flops(self.high)}"


def _value(number: str, exponent: str | None, unit: str) -> float:
    # At most 15 digits and a two-digit exponent (the regex): always a finite float.
    return float(f"{number}e{exponent or 0}") * _SCALE[unit.lower()]


def _exact(n: float) -> tuple[str, str]:
    """``n`` as a number and a unit that :func:`_value` turns back into exactly ``n``."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            for digits in (6, 12, 17):
                text = f"{n / scale:.{digits}g}"
                if "e" not in text and _value(text, None, unit) == n:
                    return text, unit
    return f"{n:.17g}", ""


def parse_budget(text: str) -> Budget:
    """Parse a budget string, or raise a one-line :class:`UserError` listing the accepted forms."""
    s = str(text)
    bad = UserError(f"cannot read budget {s!r}; accepted forms: {ACCEPTED}")
    if m := _ONE.match(s):
        number, exponent, unit = m.groups()
        high = _value(number, exponent, unit)
        if not unit and not exponent and high < 1e3:
            raise UserError(f"budget {s!r} would be {high:g} multiply-adds; add a unit, e.g. {s.strip()}GFLOPs")
        if high <= 0:
            raise bad
        return Budget(high=high)
    if m := _RANGE.match(s):
        n1, e1, u1, n2, e2, u2 = m.groups()
        # "3.5-4GFLOPs": a unit written only at the end applies to both ends.
        if not u1 and not e1 and u2:
            u1 = u2
        low, high = _value(n1, e1, u1), _value(n2, e2, u2)
        if not 0 < low < high:
            raise UserError(f"budget window {s!r} must go from a smaller to a larger positive value")
        return Budget(high=high, low=low)
    raise bad
