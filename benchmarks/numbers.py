"""The one rule for "is this a number": used by record validation and by every report page."""

from __future__ import annotations

import math


def finite(value: object) -> float | None:
    """``value`` as a finite float, or ``None`` for anything else: bools, strings, ``None``,
    NaN, infinities and integers too large for a float are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error message (an exception's, or a recorded one); the
    exception's type name when it says nothing."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""
