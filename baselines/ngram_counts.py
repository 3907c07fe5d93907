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
        int32 number of occurrences of each n-gram in the stream.
    adjusted:
        int32 Kneser-Ney adjusted counts (see module docstring).
    context:
        int32 row, in the table of order ``j - 1``, of each n-gram's context ``x_1 .. x_{j-1}``
        (all zeros for unigrams: their context is the empty history).

    Counts and rows are int32 (a stream of up to 2**31 - 1 tokens): half the memory of int64,
    which is what bounds the size of corpus a machine can count.
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
    # in place where it can be: a scored stream of N tokens is N int64s per temporary
    last_boundary = np.arange(n, dtype=np.int64)
    last_boundary[seq[:-1] != boundary] = 0
    np.maximum.accumulate(last_boundary, out=last_boundary)
    t -= last_boundary
    return t


def _unique(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(q, return_index, return_inverse, return_counts)`` with int32 inverse and counts,
    but ``first`` may be any occurrence: an unstable sort is about twice as fast as the stable one
    ``np.unique`` needs."""
    order = np.argsort(q)
    s = q[order]
    new = np.empty(len(s), dtype=bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.nonzero(new)[0]
    inv = np.empty(len(q), dtype=np.int32)
    inv[order] = np.cumsum(new, dtype=np.int32) - 1
    cnt = np.diff(np.append(starts, len(s))).astype(np.int32)
    return s[starts], order[starts], inv, cnt


def count_ngrams(
    train: np.ndarray, vocab_size: int, boundary: int, order: int, *, cross_boundary: bool = False
) -> NGramCounts:
    """Count every n-gram of orders ``1..order`` of ``train`` (int64 ids, ``(N,)``).

    Vectorized: one sort per order over the keys of all windows.  Memory: the tables, plus about
    40 bytes per token for the order being counted.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if len(train) >= np.iinfo(np.int32).max:
        raise ValueError(f"{len(train):,} tokens: the counts are int32, at most 2**31 - 2 tokens")
    v = int(vocab_size)
    seq = np.concatenate([[boundary], np.asarray(train, dtype=np.int64)]).astype(np.int64)
    n = len(seq) - 1
    # window length at positions 1..N (orders fit int8: MAX_ORDER is 32)
    window = np.minimum(history_lengths(seq, boundary, truncate=not cross_boundary) + 1,
                        order).astype(np.int8)

    keys = [np.arange(v, dtype=np.int64)]
    raw = [np.bincount(seq[1:], minlength=v).astype(np.int32)]
    starts = [np.bincount(seq[1:][window == 1], minlength=v).astype(np.int32)]
    context = [np.zeros(v, dtype=np.int32)]
    rows_prev = seq  # row of the order-(j-1) gram ending at each position of seq (-1: none)
    for j in range(2, order + 1):
        pos = np.nonzero(window >= j)[0] + 1
        uniq, first, inv, cnt = _unique(rows_prev[pos].astype(np.int64) * v + seq[pos - j + 1])
        keys.append(uniq)
        raw.append(cnt)
        starts.append(np.bincount(inv[window[pos - 1] == j], minlength=len(uniq)).astype(np.int32))
        # The context of the j-gram ending at t is the (j-1)-gram ending at t - 1.
        context.append(rows_prev[pos[first] - 1].astype(np.int32))
        rows_prev = np.full(n + 1, -1, dtype=np.int32)
        rows_prev[pos] = inv
        del pos, inv  # before the next order allocates its own

    adjusted = []
    for j in range(1, order + 1):
        if j == order:
            adjusted.append(raw[j - 1].copy())
        else:
            left_extensions = np.bincount(keys[j] // v, minlength=len(keys[j - 1]))
            adjusted.append(starts[j - 1] + left_extensions.astype(np.int32))
    return NGramCounts(order, v, n, keys, raw, adjusted, context)
