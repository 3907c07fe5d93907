"""What bounds a ``fit`` and how it keeps time: :class:`Budget`, :class:`Stopwatch` and
:class:`ValidationTimer`.

A budget is checked by the family's training loop against what it has used so far; the whole
``fit`` counts, its validation scoring included::

    fit(train, vocab, budget=Budget(tokens=1_000_000, seconds=60))
        clock = Stopwatch()                  wall seconds since fit began
        timer = ValidationTimer()            seconds spent scoring validation data
        timer.calibrate(score, valid)        measures the cost per validation token
        ... train until budget.exhausted(tokens=seen, steps=n,
                                         seconds=clock() + timer.estimate(len(valid))) ...
        timer.score(score, valid)            the final evaluation, timed
        FitReport(seconds=clock(), valid_seconds=timer.seconds, ...)

This module imports nothing of lmladder but :mod:`lmladder.config` (for :class:`ConfigError`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmladder.config import ConfigError


@dataclass(frozen=True)
class Budget:
    """Bounds one ``fit``: stop at whichever limit is reached first (``None`` = no limit).

    ``tokens`` counts training tokens processed (repeated epochs count again), ``steps`` counts
    optimizer steps or EM iterations, ``seconds`` is wall-clock time of the *whole* ``fit``,
    validation inside it included (a family stops training early enough for its final
    evaluation to fit, and cuts or skips that evaluation rather than overrun).  Every limit must
    be > 0 (and finite): anything else is a :class:`ConfigError` naming the key and value.
    """

    tokens: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for key in ("tokens", "steps"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"budget.{key} must be a whole number, got {value!r}")
            if value <= 0:
                raise ConfigError(f"budget.{key} must be > 0, got {value!r}")
        s = self.seconds
        if s is not None:
            if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
                raise ConfigError(f"budget.seconds must be a number, got {s!r}")
            if not math.isfinite(s) or s <= 0:
                raise ConfigError(f"budget.seconds must be > 0, got {s!r}")

    def exhausted(self, *, tokens: int = 0, steps: int = 0, seconds: float = 0.0) -> bool:
        return (
            (self.tokens is not None and tokens >= self.tokens)
            or (self.steps is not None and steps >= self.steps)
            or (self.seconds is not None and seconds >= self.seconds)
        )

    def fraction(self, *, tokens: int = 0, steps: int = 0, seconds: float = 0.0) -> float | None:
        """How much of the budget is used, in [0, 1], or ``None`` if unbounded."""
        parts = [
            used / limit
            for used, limit in ((tokens, self.tokens), (steps, self.steps), (seconds, self.seconds))
            if limit
        ]
        return min(1.0, max(parts)) if parts else None


class Stopwatch:
    """Wall-clock seconds since construction (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


class ValidationTimer:
    """Times the validation scoring a ``fit`` does, so a time budget can cover it.

    ``seconds`` is the total spent (what ``FitReport.valid_seconds`` reports); ``estimate(n)``
    predicts the cost of scoring ``n`` tokens from the latest measurement (``None`` before any),
    which lets a training loop stop while there is still room for its final evaluation.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.per_token: float | None = None

    def score(self, score: Callable[[np.ndarray], Any], ids: np.ndarray) -> Any:
        """``score(ids)``, timed."""
        start = time.perf_counter()
        out = score(ids)
        spent = time.perf_counter() - start
        self.seconds += spent
        self.per_token = spent / max(1, len(ids))
        return out

    def calibrate(self, score: Callable[[np.ndarray], Any], ids: np.ndarray,
                  sample: int = 2048) -> None:
        """Measure the per-token cost on the first ``sample`` ids if nothing is measured yet
        (an over-estimate for long streams, which errs on the side of the budget)."""
        if self.per_token is None and len(ids):
            self.score(score, ids[:sample])

    def estimate(self, n: int) -> float | None:
        return None if self.per_token is None else self.per_token * n

    def affordable(self, n: int, seconds_left: float | None) -> int:
        """How many of ``n`` tokens can be scored in ``seconds_left`` (``None``: all)."""
        if seconds_left is None or self.per_token is None or self.per_token == 0:
            return n
        return max(0, min(n, int(seconds_left / self.per_token)))
