"""The one check of what counts as a number on the wire: a finite float, never a boolean."""

from __future__ import annotations

import math


def finite_number(value: object) -> float | None:
    """A finite number as a float; None for anything else (booleans, NaN, huge integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
