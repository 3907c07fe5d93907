"""Backoff tables (the content of an ARPA file) and queries on them.

For each order ``j = 1..n`` a table lists n-grams under sorted int64 keys (see
:mod:`lmladder.baselines.ngram_counts`: key = row of the suffix ``x_2..x_j`` * V + ``x_1``), with

* ``logp[j-1]``: ln p(x_j | x_1..x_{j-1}), the full (interpolated) probability, float64;
* ``bow[j-1]``: ln backoff weight of ``x_1..x_j`` used as a context (0 when it is none).

The unigram table lists every vocabulary id (row = id).  A query for word ``w`` after a history
``h`` of ``m`` tokens (``m <= n - 1``) is answered as an ARPA model answers it: with ``J`` the
longest listed n-gram ``h[-(J-1):] w``,

    ln p(w | h) = logp_J(h[-(J-1):] w) + sum_{l = J..m} bow_l(h[-l:])      (chain backoff)

where contexts that are not listed contribute 0.  Add-k models are *flat*: their unlisted words
fall straight to the uniform distribution, ``ln p(w | h) = bow_m(h) - ln V`` (or ``-ln V`` when
``h`` is not listed), because add-k interpolates every order with the uniform distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row of each ``query`` key in the sorted ``keys``, or -1 where absent (int64, like query)."""
    if len(keys) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    idx = np.searchsorted(keys, query)
    idx = np.minimum(idx, len(keys) - 1)
    return np.where(keys[idx] == query, idx, -1).astype(np.int64)


@dataclass
class ContextIndex:
    """The n-grams of one order grouped by context: ``grams[offsets[c]:offsets[c + 1]]`` are the
    rows whose context has row ``c`` in the table below; ``words`` is each n-gram's last token."""

    grams: np.ndarray
    offsets: np.ndarray
    words: np.ndarray


@dataclass
class BackoffTables:
    vocab_size: int
    keys: list[np.ndarray]
    logp: list[np.ndarray]
    bow: list[np.ndarray]
    flat: bool = False
    _tokens: dict = field(default_factory=dict, repr=False)
    _index: dict = field(default_factory=dict, repr=False)
    # the hashed image score() walks (ngram_image), built on its first call or attached from a
    # saved model's file (tables do not change after a fit)
    _hashed: Any = field(default=None, repr=False)

    @property
    def order(self) -> int:
        return len(self.keys)

    def sizes(self) -> list[int]:
        return [len(k) for k in self.keys]

    def num_parameters(self) -> int:
        """Stored probabilities plus non-zero backoff weights (what an ARPA file holds)."""
        return int(sum(len(p) for p in self.logp) + sum(np.count_nonzero(b) for b in self.bow))

    # -- structure ----------------------------------------------------------------------------

    def ngram_tokens(self, j: int) -> np.ndarray:
        """The tokens of every n-gram of order ``j``, in reading order: int64 ``(size_j, j)``."""
        if j not in self._tokens:
            v = self.vocab_size
            if j == 1:
                out = np.arange(v, dtype=np.int64)[:, None]
            else:
                k = self.keys[j - 1]
                out = np.concatenate([(k % v)[:, None], self.ngram_tokens(j - 1)[k // v]], axis=1)
            self._tokens[j] = out
        return self._tokens[j]

    def rows_of(self, tokens: np.ndarray) -> np.ndarray:
        """Row of each n-gram in ``tokens`` (int64 ``(M, j)``, reading order) in the table of
        order ``j``, or -1 where it (or one of its suffixes) is not listed."""
        m, j = tokens.shape
        r = tokens[:, -1].copy()
        for i in range(2, j + 1):
            ok = r >= 0
            r[ok] = lookup(self.keys[i - 1], r[ok] * self.vocab_size + tokens[ok, j - i])
        return r

    def context_index(self, j: int) -> ContextIndex:
        """Order-``j`` n-grams grouped by context (built on first use, then cached)."""
        if j not in self._index:
            toks = self.ngram_tokens(j)
            ctx = self.rows_of(toks[:, :-1])
            if (ctx < 0).any():
                bad = toks[np.argmax(ctx < 0)].tolist()
                raise ValueError(f"the context of {j}-gram {bad} is not listed at order {j - 1}")
            grams = np.argsort(ctx, kind="stable")
            offsets = np.searchsorted(ctx[grams], np.arange(len(self.keys[j - 2]) + 1))
            self._index[j] = ContextIndex(grams, offsets, toks[:, -1].copy())
        return self._index[j]

    def select(self, keep: list[np.ndarray]) -> BackoffTables:
        """The tables with only the n-grams where ``keep[j - 1]`` (bool, one per n-gram of order
        ``j``) is True; unigrams are always kept.  ``keep`` must keep the suffix of every kept
        n-gram (keys name their suffix's row, renumbered here).  Probabilities and backoff
        weights are copied as they are: recompute the weights to renormalise."""
        v = self.vocab_size
        keys, logp, bow = [self.keys[0]], [self.logp[0]], [self.bow[0]]
        new_row = np.arange(v, dtype=np.int64)  # old row -> new row of the order below, or -1
        for j in range(2, self.order + 1):
            k, m = self.keys[j - 1], np.asarray(keep[j - 1], dtype=bool)
            suffix = new_row[k[m] // v]
            if (suffix < 0).any():
                raise ValueError(f"a kept {j}-gram has a dropped suffix; keep must be "
                                 "suffix-closed")
            keys.append(suffix * v + k[m] % v)
            logp.append(self.logp[j - 1][m])
            bow.append(self.bow[j - 1][m])
            new_row = np.where(m, np.cumsum(m) - 1, -1)
        return BackoffTables(v, keys, logp, bow, flat=self.flat)

    # -- queries ------------------------------------------------------------------------------

    def score(self, seq: np.ndarray, hist: np.ndarray) -> np.ndarray:
        """ln p(seq[t] | history) for ``t = 1..N``: float64 ``(N,)``, by the compiled stream walk
        over the hashed image of these tables (:mod:`lmladder.baselines.ngram_image`).

        ``seq``: int64 ``(N + 1,)`` whose first entry is the initial boundary; ``hist``: int64
        ``(N,)``, tokens of history usable at each position (already capped at ``order - 1``,
        growing by at most one per position).
        """
        if self.order == 1:  # nothing to look up
            return self.logp[0][seq[1:]].astype(np.float64)
        if self._hashed is None:
            from lmladder.baselines.ngram_image import build

            self._hashed = build(self)
        out = np.empty(len(hist))
        self._hashed.score(np.ascontiguousarray(seq, dtype=np.int64),
                           np.ascontiguousarray(hist, dtype=np.int64), out)
        return out

    def distributions(self, histories: np.ndarray) -> np.ndarray:
        """Full next-token ln-distributions: float64 ``(B, V)``.

        ``histories``: int64 ``(B, order - 1)``, the most recent token last, left-padded with -1
        (fewer tokens of history).
        """
        b, v, n = len(histories), self.vocab_size, self.order
        m = (histories >= 0).sum(axis=1) if n > 1 else np.zeros(b, dtype=np.int64)
        ctx = np.full((b, max(n - 1, 1)), -1, dtype=np.int64)
        if n > 1:
            ctx[:, 0] = np.where(m >= 1, histories[:, -1], -1)
        for lvl in range(2, n):
            alive = np.nonzero((m >= lvl) & (ctx[:, lvl - 2] >= 0))[0]
            ctx[alive, lvl - 1] = lookup(
                self.keys[lvl - 1], ctx[alive, lvl - 2] * v + histories[alive, -lvl]
            )
        if self.flat:
            out = np.full((b, v), -math.log(v))
            for lvl in range(0, n):
                sel = np.nonzero(m == lvl)[0]
                if lvl == 0:
                    out[sel] = self.logp[0]
                    continue
                sel = sel[ctx[sel, lvl - 1] >= 0]
                out[sel] = (self.bow[lvl - 1][ctx[sel, lvl - 1]] - math.log(v))[:, None]
                self._scatter(out, sel, ctx[sel, lvl - 1], lvl + 1)
            return out
        out = np.tile(self.logp[0], (b, 1))
        for j in range(2, n + 1):
            sel = np.nonzero((m >= j - 1) & (ctx[:, j - 2] >= 0))[0]
            if len(sel) == 0:
                break
            out[sel] += self.bow[j - 2][ctx[sel, j - 2]][:, None]
            self._scatter(out, sel, ctx[sel, j - 2], j)
        return out

    def _scatter(self, out: np.ndarray, rows: np.ndarray, contexts: np.ndarray, j: int) -> None:
        """Write the listed order-``j`` probabilities of each context into its row of ``out``."""
        if len(rows) == 0:
            return
        idx = self.context_index(j)
        start, stop = idx.offsets[contexts], idx.offsets[contexts + 1]
        lengths = stop - start
        total = int(lengths.sum())
        if total == 0:
            return
        which = np.repeat(np.arange(len(rows)), lengths)
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        grams = idx.grams[np.repeat(start, lengths) + within]
        out[rows[which], idx.words[grams]] = self.logp[j - 1][grams]
