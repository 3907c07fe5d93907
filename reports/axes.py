"""Axes of the report's figures: which values an axis can show, its limits, its ticks and how
their labels are written.

Log axes start and end where the data and the reference lines do (never at 1 or 0), with a
margin in decades; linear axes get a 5% margin and, for bars, keep zero inside.  Tick labels are
short and plain (``950``, ``1.5k``, ``20M``), never ``10^x`` mathtext, and a log axis has no
unlabelled minor ticks.  Values a log axis cannot show (zero, negative, NaN, inf) are left out
by the figures (:func:`showable`).

The limit and tick functions are pure; the ``set_*``/``apply_scale`` functions configure a
matplotlib axis and import matplotlib inside, so importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lmladder.numbers import finite


def showable(value, log: bool) -> float | None:
    """``value`` as a float if an axis (log or not) can show it, else None."""
    number = finite(value)
    if number is None or (log and number <= 0):
        return None
    return number


def log_limits(values: Iterable[float]) -> tuple[float, float]:
    """Limits (lo, hi) of a log axis that shows every positive finite value with a margin.

    The margin is 6% of the values' span in decades, at least 0.02 decades (about 5%), so a
    tiny range such as 100..101 gives about (95.5, 105.8), never an axis from 1 or 0.
    Non-positive and non-finite values are ignored; raises ValueError if none is left.
    """
    usable = [v for v in map(finite, values) if v is not None and v > 0]
    if not usable:
        raise ValueError("log_limits: no positive finite value")
    lo, hi = math.log10(min(usable)), math.log10(max(usable))
    margin = max(0.06 * (hi - lo), 0.02)
    return 10 ** (lo - margin), 10 ** (hi + margin)


def linear_limits(values: Iterable[float], *, zero: bool = False) -> tuple[float, float]:
    """Limits (lo, hi) of a linear axis showing every finite value with a 5% margin; ``zero``
    keeps 0 inside (bars start at zero).  Raises ValueError if no value is finite."""
    usable = [v for v in map(finite, values) if v is not None]
    if zero:
        usable.append(0.0)
    if not usable:
        raise ValueError("linear_limits: no finite value")
    lo, hi = min(usable), max(usable)
    margin = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 1.0)
    return (lo if zero and lo == 0 else lo - margin), (hi if zero and hi == 0 else hi + margin)


def _nice_steps(lo: float, hi: float) -> list[float]:
    """Three to seven round numbers (1, 2, 2.5 or 5 times a power of ten apart) in [lo, hi]:
    the largest such step that gives at least three."""
    if hi <= lo:
        return [lo]
    power = math.floor(math.log10(hi - lo))
    steps = sorted((m * 10.0**e for e in range(power - 2, power + 1) for m in (1, 2, 2.5, 5)),
                   reverse=True)
    for step in steps:
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if last - first + 1 >= 3:
            return [round(k * step, 12) for k in range(first, last + 1)]
    return [lo, hi]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Labelled tick positions for a log axis from ``lo`` to ``hi`` (both > 0): powers of ten,
    then 1-2-5, then 1-2-3-5 steps, whichever first gives at least three ticks (at most eight);
    on a range too narrow for any of them, round linear steps (e.g. 96, 98, 100, 102, 104)."""
    for subs in ((1,), (1, 2, 5), (1, 2, 3, 5)):
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        ticks = [m * 10.0**e for e in decades for m in subs if lo <= m * 10.0**e <= hi]
        if len(ticks) > 8:
            step = math.ceil(len(ticks) / 8)
            ticks = ticks[::step]
        if len(ticks) >= 3:
            return ticks
    return [t for t in _nice_steps(lo, hi) if t > 0]


def tick_text(value: float) -> str:
    """A short tick label: ``950``, ``1.5k``, ``20M``, ``3G``, ``1e+15``, ``0.25``."""
    if value == 0:
        return "0"
    size = abs(value)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if 1e15 > size >= scale:
            return f"{value / scale:.3g}{suffix}"
    if size >= 1e15 or size < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def set_log_axis(axis, lo: float, hi: float) -> None:
    """A log axis from lo to hi with round, plainly written tick labels (no 10^x mathtext)."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.FixedLocator(log_ticks(lo, hi)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: tick_text(v)))
    # No unlabelled minor ticks: the labelled 1-2-5 ticks and their grid lines read the axis,
    # and matplotlib lays out and draws every tick as four artists (dozens per log axis).
    axis.set_minor_locator(ticker.NullLocator())


def set_linear_axis(axis) -> None:
    """Plain, short tick labels (:func:`tick_text`) on a linear axis."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: tick_text(v)))


def apply_scale(ax, which: str, log: bool, values: list[float]) -> None:
    """Scale and limits of ``ax``'s x or y axis from the values it must show."""
    if log:
        lo, hi = log_limits(values)
        getattr(ax, f"set_{which}scale")("log")
        getattr(ax, f"set_{which}lim")(lo, hi)
        set_log_axis(getattr(ax, f"{which}axis"), lo, hi)
    else:
        getattr(ax, f"set_{which}lim")(*linear_limits(values))
        set_linear_axis(getattr(ax, f"{which}axis"))



def bar_axis(ax, log: bool, values: list[float], room: float = 0.0) -> float:
    """The x axis of horizontal bars, from the values it must show plus ``room`` (a share of
    its span, in decades on a log axis) after the largest; returns where bars start: the
    axis's low limit on a log axis, else zero (linear limits keep zero inside)."""
    if log:
        lo, hi = log_limits(values)
        hi *= (hi / lo) ** room
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        set_log_axis(ax.xaxis, lo, hi)
        return lo
    lo, hi = linear_limits(values, zero=True)
    ax.set_xlim(lo, hi + room * (hi - lo))
    set_linear_axis(ax.xaxis)
    return 0.0
