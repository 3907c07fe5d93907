"""Counting the n-grams of a token stream with numpy, under lmladder's boundary convention.

Streams and windows
-------------------
A training stream ``train`` (int64 ids, ``(N,)``) is counted as ``seq = [boundary] + train``:
before any stream the model has seen one boundary token.  Position ``t = 1..N`` of ``seq`` is a
predicted token, and its *window* is the longest legal n-gram ending at ``t`` (at most ``order``
tokens).  With ``cross_boundary=False`` the window starts no earlier than the last boundary before
``t``, so the boundary appears in a window only at its first position (where it plays KenLM's
``<s>``) or as the predicted token (``</s>``).  With ``cross_boundary=True`` the boundary is an
ordinary token and windows only stop at the start of the stream.

Every n-gram occurring in the stream is a suffix of some window, so counting the ``j``-token
suffixes of all windows of length ``>= j`` enumerates every ``j``-gram occurrence once.

Keys
----
``j``-grams live in a sorted table per order; an n-gram ``x_1 .. x_j`` has the key
``row_{j-1}(x_2 .. x_j) * V + x_1`` -- its suffix's row in the table of order ``j - 1`` (for
unigrams the row is the token id itself), extended one token to the LEFT.  A query therefore walks
from the predicted word towards older history, one ``searchsorted`` per order, which is exactly
the order in which a backoff model drops context.  Every listed n-gram's suffix is listed.

Adjusted counts (Kneser-Ney, as KenLM's ``lmplz``)
--------------------------------------------------
For the highest order, and for n-grams that start at the start of a window shorter than the order
(i.e. begin with ``<s>``, or with the start of the stream when ``cross_boundary=True``), the
adjusted count is the raw count: they cannot be extended to the left.  Every other n-gram's
adjusted count is its number of distinct left extensions ``|{v : c(v x_1 .. x_j) > 0}|``.  Both
terms are added, which is the same thing as counting the stream start as one more distinct left
extension.  The unigram of the boundary (as ``</s>``) thus gets its continuation count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NGramCounts:
    """Count tables of orders ``1..order`` (list index ``j - 1`` holds order ``j``).

    Attributes
    ----------
    keys:
        Sorted int64 keys (see module docstring).  Order 1 lists every vocabulary id,
        ``keys[0] = arange(V)``, counted or not.
    raw:
        int64 number of occurrences of each n-gram in the stream.
    adjusted:
        int64 Kneser-Ney adjusted counts (see module docstring).
    context:
        int64 row, in the table of order ``j - 1``, of each n-gram's context ``x_1 .. x_{j-1}``
        (all zeros for unigrams: their context is the empty history).
    """

    order: int
    vocab_size: int
    tokens: int
    keys: list[np.ndarray]
    raw: list[np.ndarray]
    adjusted: list[np.ndarray]
    context: list[np.ndarray]


def history_lengths(seq: np.ndarray, boundary: int, *, truncate: bool) -> np.ndarray:
    """How many tokens of history precede each predicted position of ``seq``.

    ``seq`` (int64, ``(N + 1,)``) starts with the initial boundary token; the result is int64
    ``(N,)`` for positions ``1..N``.  With ``truncate`` the history starts at the last boundary
    before the position (that boundary included, as ``<s>``); otherwise it is the whole prefix.
    """
    n = len(seq) - 1
    t = np.arange(1, n + 1, dtype=np.int64)
    if not truncate:
        return t
    idx = np.arange(len(seq), dtype=np.int64)
    last_boundary = np.maximum.accumulate(np.where(seq == boundary, idx, 0))
    return t - last_boundary[:-1]


def _unique(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(q, return_index, return_inverse, return_counts)``, but ``first`` may be any
    occurrence: an unstable sort is about twice as fast as the stable one ``np.unique`` needs."""
    order = np.argsort(q)
    s = q[order]
    new = np.empty(len(s), dtype=bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.nonzero(new)[0]
    inv = np.empty(len(q), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    cnt = np.diff(np.append(starts, len(s)))
    return s[starts], order[starts], inv, cnt


def count_ngrams(
    train: np.ndarray, vocab_size: int, boundary: int, order: int, *, cross_boundary: bool = False
) -> NGramCounts:
    """Count every n-gram of orders ``1..order`` of ``train`` (int64 ids, ``(N,)``).

    Vectorized: one ``np.unique`` per order over the keys of all windows.  Memory is a few int64
    arrays of length ``N`` per order.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    v = int(vocab_size)
    seq = np.concatenate([[boundary], np.asarray(train, dtype=np.int64)]).astype(np.int64)
    n = len(seq) - 1
    hist = history_lengths(seq, boundary, truncate=not cross_boundary)
    window = np.minimum(hist + 1, order)  # window length at positions 1..N

    keys = [np.arange(v, dtype=np.int64)]
    raw = [np.bincount(seq[1:], minlength=v).astype(np.int64)]
    starts = [np.bincount(seq[1:][window == 1], minlength=v).astype(np.int64)]
    context = [np.zeros(v, dtype=np.int64)]
    rows_prev = seq  # row of the order-(j-1) gram ending at each position of seq (-1: none)
    for j in range(2, order + 1):
        pos = np.nonzero(window >= j)[0] + 1
        q = rows_prev[pos] * v + seq[pos - j + 1]
        uniq, first, inv, cnt = _unique(q)
        rows = np.full(n + 1, -1, dtype=np.int64)
        rows[pos] = inv
        keys.append(uniq.astype(np.int64))
        raw.append(cnt.astype(np.int64))
        starts.append(np.bincount(inv[window[pos - 1] == j], minlength=len(uniq)).astype(np.int64))
        # The context of the j-gram ending at t is the (j-1)-gram ending at t - 1.
        context.append(rows_prev[pos[first] - 1])
        rows_prev = rows

    adjusted = []
    for j in range(1, order + 1):
        if j == order:
            adjusted.append(raw[j - 1].copy())
        else:
            left_extensions = np.bincount(keys[j] // v, minlength=len(keys[j - 1]))
            adjusted.append(starts[j - 1] + left_extensions.astype(np.int64))
    return NGramCounts(order, v, n, keys, raw, adjusted, context)
