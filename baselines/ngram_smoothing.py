"""Smoothing strategies, and compiling any of them into backoff (ARPA) tables.

Every strategy here is an *interpolated* estimate, order by order::

    p_j(w | h) = alpha_j(h w) + gamma_j(h) * base_j(w | h)

where ``alpha_j`` is non-zero only for n-grams ``h w`` listed at order ``j`` and ``gamma_j(h)`` is
the mass the context ``h`` reserves for the base distribution.  The base is the next lower order
``p_{j-1}(w | h[1:])`` (a *chain*: every strategy but add-k), with the uniform ``1 / V`` below the
unigrams; add-k's base is the uniform distribution at every order (*flat*).  So every listed n-gram
stores its full ``p_j(w | h)`` and every context its ``gamma_j(h)`` -- exactly the probability and
backoff weight of an ARPA file -- and an unlisted word costs ``gamma_j(h) * base``.

A strategy only computes ``alpha`` and ``gamma`` for one order from counts; :func:`compile_tables`
does the rest.  Definitions (``c``: count of ``h w`` -- raw or Kneser-Ney adjusted; ``C(h)``: sum
of ``c`` over the context; ``T(h)``: number of listed ``w``; ``N_i(h)``: number with ``c == i``,
``N_3+`` with ``c >= 3``):

=======================  =======================================  ==============================
smoothing                alpha                                    gamma
=======================  =======================================  ==============================
mle                      c / C                                    0
add-k (flat)             c / (C + k V)                            k V / (C + k V)
witten-bell              c / (C + T)                              T / (C + T)
absolute-discounting     (c - D) / C, raw counts                  D T / C
kneser-ney               (c - D) / C, adjusted counts             D T / C
modified-kneser-ney      (c - D_c) / C, adjusted counts           (D1 N1 + D2 N2 + D3 N3+) / C
=======================  =======================================  ==============================

Discounts are estimated per order from the count-of-counts ``n_i`` of that order's counts
(Ney et al. 1994; Chen & Goodman 1998, eq. 26): ``Y = n1 / (n1 + 2 n2)``, ``D = Y`` for one
discount, ``D_i = i - (i + 1) Y n_{i+1} / n_i`` for modified Kneser-Ney.  On tiny corpora an
estimate can fall outside ``(0, i]`` (or be undefined); it is then replaced by ``Y`` (0.5 when
``Y`` itself is undefined) and a warning is logged.  A fixed ``discount`` overrides every estimate.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.baselines.ngram_counts import NGramCounts

log = logging.getLogger(__name__)


class Smoothing(ABC):
    """How one order's counts become ``alpha`` (per n-gram) and ``gamma`` (per context)."""

    flat: ClassVar[bool] = False  # base is the uniform distribution at every order
    adjusted: ClassVar[bool] = False  # uses Kneser-Ney adjusted counts instead of raw counts

    @abstractmethod
    def weights(
        self, counts: np.ndarray, context: np.ndarray, num_contexts: int, vocab_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``alpha`` (float64, like ``counts``) and ``gamma`` (float64, ``(num_contexts,)``).

        ``counts``: int64 count of every n-gram of the order; ``context``: int64 row of each
        n-gram's context in ``[0, num_contexts)``.  Contexts without n-grams get ``gamma = 1``.
        """

    def discounts(self) -> list[np.ndarray]:
        """Discounts used per order so far (empty when the strategy has none)."""
        return []


def _totals(counts: np.ndarray, context: np.ndarray, num_contexts: int) -> np.ndarray:
    return np.bincount(context, weights=counts.astype(np.float64), minlength=num_contexts)


def _safe_div(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class MaximumLikelihood(Smoothing):
    """Relative frequencies; unseen words of a seen context get probability zero."""

    def weights(self, counts, context, num_contexts, vocab_size):
        total = _totals(counts, context, num_contexts)
        alpha = counts / np.maximum(total[context], 1.0)
        gamma = np.where(total > 0, 0.0, 1.0)
        return alpha, gamma


@dataclass(frozen=True)
class AddK(Smoothing):
    """Lidstone (``k = 1``: Laplace): ``(c + k) / (C + k V)``, uniform for unseen contexts."""

    k: float
    flat: ClassVar[bool] = True

    def weights(self, counts, context, num_contexts, vocab_size):
        total = _totals(counts, context, num_contexts)
        denom = total + self.k * vocab_size
        return counts / denom[context], self.k * vocab_size / denom


@dataclass(frozen=True)
class WittenBell(Smoothing):
    """Interpolated Witten-Bell: the context reserves ``T / (C + T)`` for its base."""

    def weights(self, counts, context, num_contexts, vocab_size):
        total = _totals(counts, context, num_contexts)
        types = np.bincount(context, weights=(counts > 0).astype(np.float64),
                            minlength=num_contexts)
        denom = total + types
        return _safe_div(counts, denom[context], 0.0), _safe_div(types, denom, 1.0)


def estimate_discounts(counts: np.ndarray, levels: int) -> np.ndarray:
    """Discounts from count-of-counts: ``(levels,)`` float64, ``D_i`` for counts ``i = 1..levels``
    (the last applies to all larger counts).  See the module docstring for the formulas."""
    n = np.bincount(np.minimum(counts[counts > 0], 5), minlength=6)[1:5].astype(np.float64)
    n1, n2 = n[0], n[1]
    y = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
    if levels == 1:
        return np.array([y])
    out = np.empty(levels)
    for i in range(1, levels + 1):
        d = i - (i + 1) * y * n[i] / n[i - 1] if n[i - 1] > 0 else np.nan
        if not 0.0 < d <= i:
            log.warning("discount D%d = %r is outside (0, %d] (count-of-counts %s); using Y = %g",
                        i, d, i, n.astype(int).tolist(), y)
            d = y
        out[i - 1] = d
    return out


@dataclass
class Discounting(Smoothing):
    """Absolute discounting (raw counts) and Kneser-Ney (adjusted counts), with one discount per
    order or, ``levels=3``, modified Kneser-Ney's three (for counts 1, 2 and 3+)."""

    adjusted: bool  # type: ignore[misc]  # an instance field here, a class constant elsewhere
    levels: int = 1
    fixed: float | None = None

    def __post_init__(self) -> None:
        self._used: list[np.ndarray] = []

    def weights(self, counts, context, num_contexts, vocab_size):
        if self.fixed is not None:
            d = np.full(self.levels, float(self.fixed))
        else:
            d = estimate_discounts(counts, self.levels)
        self._used.append(d)
        level = np.minimum(counts, self.levels) - 1
        removed = np.where(counts > 0, d[np.maximum(level, 0)], 0.0)
        total = _totals(counts, context, num_contexts)
        reserved = np.bincount(context, weights=removed, minlength=num_contexts)
        alpha = _safe_div(counts - removed, total[context], 0.0)
        return alpha, _safe_div(reserved, total, 1.0)

    def discounts(self) -> list[np.ndarray]:
        return list(self._used)


def make_smoothing(name: str, *, k: float = 1.0, discount: float | None = None) -> Smoothing:
    """The strategy called ``name`` (see the table in the module docstring)."""
    if name == "mle":
        return MaximumLikelihood()
    if name == "add-k":
        return AddK(k)
    if name == "witten-bell":
        return WittenBell()
    if name == "absolute-discounting":
        return Discounting(adjusted=False, fixed=discount)
    if name == "kneser-ney":
        return Discounting(adjusted=True, fixed=discount)
    if name == "modified-kneser-ney":
        return Discounting(adjusted=True, levels=3, fixed=discount)
    raise ValueError(f"unknown smoothing {name!r}")


def compile_tables(counts: NGramCounts, smoothing: Smoothing) -> BackoffTables:
    """Turn count tables into backoff tables: ln p_j(w | h) per listed n-gram, ln gamma per
    context (0 for n-grams that are no context of any listed n-gram).  The tables share the
    key arrays of ``counts`` (not copied: they are most of the memory a fit takes)."""
    v = counts.vocab_size
    logp, bow = [], []
    prev = None
    for j in range(1, counts.order + 1):
        c = (counts.adjusted if smoothing.adjusted else counts.raw)[j - 1]
        ctx = counts.context[j - 1]
        num_ctx = 1 if j == 1 else len(counts.keys[j - 2])
        alpha, gamma = smoothing.weights(c, ctx, num_ctx, v)
        p = gamma[ctx]  # p = alpha + gamma * base, in place: a fit's peak memory is here
        p *= 1.0 / v if j == 1 or smoothing.flat else prev[counts.keys[j - 1] // v]
        p += alpha
        del alpha
        with np.errstate(divide="ignore"):
            logp.append(np.log(p))
            if j > 1:
                bow.append(np.log(gamma))
        prev = p
    bow.append(np.zeros(len(counts.keys[-1])))
    return BackoffTables(v, list(counts.keys), logp, bow, flat=smoothing.flat)
