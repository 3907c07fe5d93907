"""Count-based n-gram language models: any order, six smoothings, ARPA import and export.

How it works
------------
``fit`` counts every n-gram of the training stream with numpy
(:mod:`lmladder.baselines.ngram_counts`), turns the counts into per-order ``alpha``/``gamma`` with
a smoothing strategy and compiles them into backoff tables -- for each order, the sorted n-gram
keys with the full interpolated ln p(w | h) and, per context, the ln backoff weight
(:mod:`lmladder.baselines.ngram_smoothing`).  That is exactly an ARPA file, so scoring is the
standard backoff query, vectorized over all positions (:mod:`lmladder.baselines.ngram_backoff`),
and ARPA export/import is direct (:mod:`lmladder.baselines.arpa`).

Boundaries (KenLM-compatible)
-----------------------------
With ``cross_boundary=False`` (default) the boundary token (``<eos>``) plays ``</s>`` when it is
predicted and ``<s>`` when it is context: the history is cut after the last boundary, so a
sentence's first word is predicted from ``<s>`` alone, whatever came before.  The training stream
counts as preceded by one boundary.  Counting, adjusted counts and discounts follow KenLM's
``lmplz`` (Heafield et al. 2013), so ``kn5`` on PTB lands near ``lmplz -o 5`` (141.19).  With
``cross_boundary=True`` the boundary is an ordinary token and histories run across lines.

Smoothings: ``mle``, ``add-k`` (Lidstone, ``k``), ``witten-bell``, ``absolute-discounting``,
``kneser-ney`` and ``modified-kneser-ney`` (Chen & Goodman 1998), all interpolated; see
:mod:`lmladder.baselines.ngram_smoothing` for the formulas.  ``mle`` gives unseen events
probability zero (ln p = -inf), which the scoring harness refuses with an error naming the token
and position.

State
-----
``init_state(B)`` is an int64 ``(B, order - 1)`` array of the last ``order - 1`` tokens, the most
recent last, left-padded with -1.  ``step`` shifts a token in (and, with ``cross_boundary=False``,
forgets everything before a boundary).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    Progress,
    ProgressCallback,
    Stopwatch,
    Vocab,
    check_state_array,
    rank_counts,
    require,
)
from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.baselines.ngram_counts import count_ngrams, history_lengths
from lmladder.baselines.ngram_smoothing import compile_tables, make_smoothing

SmoothingName = Literal[
    "mle", "add-k", "witten-bell", "absolute-discounting", "kneser-ney", "modified-kneser-ney"
]
MAX_ORDER = 32  # far beyond any useful n; a huge order would only allocate huge state arrays
_DISCOUNTED = ("absolute-discounting", "kneser-ney", "modified-kneser-ney")


class NGramLM(LanguageModel):
    """An n-gram language model compiled to backoff form (see the module docstring)."""

    @dataclass(frozen=True)
    class Config:
        """Hyperparameters.

        order: n, the number of tokens in the longest n-gram (history = n - 1 tokens).
        smoothing: one of ``mle``, ``add-k``, ``witten-bell``, ``absolute-discounting``,
            ``kneser-ney``, ``modified-kneser-ney``.
        k: the pseudo-count of ``add-k`` (1.0 = Laplace).
        discount: a fixed discount in (0, 1] for every order (and, for modified Kneser-Ney,
            every count class), overriding the estimates from count-of-counts.
        cross_boundary: let histories run across the boundary token (see module docstring).
        """

        order: int = 3
        smoothing: SmoothingName = "modified-kneser-ney"
        k: float = 1.0
        discount: float | None = None
        cross_boundary: bool = False

        def __post_init__(self) -> None:
            require(self, "order", 1 <= self.order <= MAX_ORDER, f"in [1, {MAX_ORDER}]")
            require(self, "k", self.k > 0, "> 0")
            if self.discount is not None:
                if self.smoothing not in _DISCOUNTED:
                    raise ValueError(f"discount applies to {', '.join(_DISCOUNTED)}, "
                                     f"not {self.smoothing!r}")
                if not 0.0 < self.discount <= 1.0:
                    raise ValueError(f"discount must be in (0, 1], got {self.discount}")

    devices = ("cpu",)
    revision = 1
    family = "n-gram"

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.tables_: BackoffTables | None = None
        self.discounts_: np.ndarray | None = None

    # -- training -------------------------------------------------------------------------------

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Count and smooth in one pass over ``train`` (int64 ids).  ``budget.tokens`` keeps only
        the first that many training tokens; time and step limits do not apply (one pass)."""
        clock = Stopwatch()
        cfg = self.cfg
        train = np.asarray(train, dtype=np.int64)
        if budget.tokens is not None:
            train = train[: budget.tokens]
        counts = count_ngrams(train, len(vocab), vocab.boundary_id, cfg.order,
                              cross_boundary=cfg.cross_boundary)
        if callback:
            callback(Progress(1, 2, "stage", {"ngrams": float(sum(map(len, counts.keys)))}))
        smoothing = make_smoothing(cfg.smoothing, k=cfg.k, discount=cfg.discount)
        self.tables_ = compile_tables(counts, smoothing)
        used = smoothing.discounts()
        self.discounts_ = np.full((cfg.order, 3), np.nan)
        for j, d in enumerate(used):
            self.discounts_[j, : len(d)] = d
        self.vocab_ = vocab
        seconds = clock()
        if callback:
            callback(Progress(2, 2, "stage", {}))
        notes = {"ngrams_per_order": self.tables_.sizes()}
        if used:
            notes["discounts"] = [[float(x) for x in d] for d in used]
        return FitReport(train_tokens=len(train), steps=1, seconds=seconds, notes=notes)

    # -- the state API ------------------------------------------------------------------------

    def init_state(self, batch: int) -> np.ndarray:
        return np.full((batch, self.cfg.order - 1), -1, dtype=np.int64)

    def step(self, state: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tables = self._require_tables()
        tokens = np.asarray(tokens, dtype=np.int64)
        if state.shape[1] == 0:  # a unigram model has no history
            new = state.copy()
        else:
            new = np.concatenate([state[:, 1:], tokens[:, None]], axis=1)
        if state.shape[1] and not self.cfg.cross_boundary:
            cut = tokens == self.vocab_.boundary_id
            new[cut, :-1] = -1
        return tables.distributions(new), new

    # -- fast batched paths -----------------------------------------------------------------------

    def _history(self, tokens: np.ndarray, context: ContextPolicy) -> tuple[np.ndarray, np.ndarray]:
        vocab = self._require_fitted()
        seq = np.concatenate([[vocab.boundary_id], self._checked_ids(tokens)])
        truncate = not self.cfg.cross_boundary or context.reset_at_boundary
        hist = history_lengths(seq, vocab.boundary_id, truncate=truncate)
        cap = self.cfg.order - 1 if context.window is None else min(self.cfg.order - 1,
                                                                      context.window)
        return seq, np.minimum(hist, cap)

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | history), float64 ``(N,)``: one vectorized backoff query per position.

        ``context.window`` caps the history below ``order - 1`` tokens if smaller (``step`` uses
        the full ``order - 1``, so the reference loop honours no window).
        """
        seq, hist = self._history(tokens, context)
        return self._require_tables().score(seq, hist)

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy(), chunk: int = 0
    ) -> np.ndarray:
        """``(g, e)`` of each token, int64 ``(N, 2)`` (see ``LanguageModel.next_token_ranks``);
        full next-token distributions are built for ``chunk`` positions at a time (default: ~4M
        floats)."""
        tables = self._require_tables()
        seq, hist = self._history(tokens, context)
        n, v = self.cfg.order, len(self.vocab_)
        chunk = chunk or max(1, (1 << 22) // v)
        out = np.empty((len(hist), 2), dtype=np.int64)
        for lo in range(0, len(hist), chunk):
            t = np.arange(lo + 1, min(lo + chunk, len(hist)) + 1)
            h = np.full((len(t), n - 1), -1, dtype=np.int64)
            for lvl in range(1, n):
                ok = hist[t - 1] >= lvl
                h[ok, n - 1 - lvl] = seq[t[ok] - lvl]
            out[t - 1] = rank_counts(tables.distributions(h), seq[t])
        return out

    # -- bookkeeping ----------------------------------------------------------------------------

    def num_parameters(self) -> int:
        """Stored probabilities plus non-zero backoff weights (the numbers of the ARPA file)."""
        return self._require_tables().num_parameters()

    def inspect(self) -> list[dict]:
        tables = self._require_tables()
        rows = []
        for j in range(1, self.cfg.order + 1):
            d = [] if self.discounts_ is None else self.discounts_[j - 1]
            rows.append([j, tables.sizes()[j - 1],
                         *[None if not np.isfinite(x) else round(float(x), 4) for x in d]])
        return [{
            "title": f"{self.cfg.smoothing} {self.cfg.order}-gram: n-grams and discounts",
            "columns": ["order", "n-grams", "D1", "D2", "D3+"],
            "rows": rows,
        }]

    def _require_tables(self) -> BackoffTables:
        self._require_fitted()
        assert self.tables_ is not None
        return self.tables_

    def _state_arrays(self) -> dict[str, np.ndarray]:
        t = self._require_tables()
        arrays = {"discounts": self.discounts_ if self.discounts_ is not None
                  else np.full((self.cfg.order, 3), np.nan)}
        for j in range(1, t.order + 1):
            arrays[f"keys_{j}"] = t.keys[j - 1]
            arrays[f"logp_{j}"] = t.logp[j - 1]
            arrays[f"bow_{j}"] = t.bow[j - 1]
        return arrays

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the tables, refusing arrays that do not fit the vocabulary and order: the
        unigram table has one row per vocabulary entry, every order's keys are sorted and name a
        row of the order below times V plus a token, and probabilities match their keys."""
        n, v = self.cfg.order, len(self.vocab_)
        keys, logp, bow = [], [], []
        below = 1  # rows of the order below (one empty context for unigrams)
        for j in range(1, n + 1):
            k = check_state_array(arrays, f"keys_{j}", (v,) if j == 1 else (None,), "i")
            size = len(k)
            logp.append(check_state_array(arrays, f"logp_{j}", (size,)).astype(np.float64))
            bow.append(check_state_array(arrays, f"bow_{j}", (size,)).astype(np.float64))
            k = k.astype(np.int64)
            if j == 1 and not np.array_equal(k, np.arange(v)):
                raise ValueError(f"array 'keys_1' must list the {v} vocabulary ids in order")
            if size and (k[0] < 0 or k[-1] >= below * v or (np.diff(k) <= 0).any()):
                raise ValueError(f"array 'keys_{j}' is not a sorted list of {j}-gram keys below "
                                 f"{below} x {v} (vocabulary of {v})")
            keys.append(k)
            below = size
        if f"keys_{n + 1}" in arrays:
            raise ValueError(f"the arrays hold more orders than the config's order={n}")
        self.tables_ = BackoffTables(v, keys, logp, bow, flat=self.cfg.smoothing == "add-k")
        self.discounts_ = check_state_array(arrays, "discounts", (n, 3)).astype(np.float64)

    # -- ARPA -----------------------------------------------------------------------------------

    def to_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (log10 probabilities; :mod:`lmladder.baselines.arpa`)."""
        from lmladder.baselines.arpa import write_arpa

        if self.cfg.smoothing == "add-k":
            raise ValueError("add-k interpolates every order with the uniform distribution, which "
                             "an ARPA backoff chain cannot express; export another smoothing")
        return write_arpa(self._require_tables(), self.vocab_, path,
                          cross_boundary=self.cfg.cross_boundary)

    @classmethod
    def from_arpa(
        cls,
        path: str | Path,
        vocab: Vocab,
        *,
        smoothing: SmoothingName = "modified-kneser-ney",
        aliases: Mapping[str, str | None] | None = None,
    ) -> NGramLM:
        """Read an ARPA file onto ``vocab``.

        The order comes from the file; ``cross_boundary`` is False when the file has ``<s>`` or
        ``</s>`` (they become the vocabulary's boundary token) and True otherwise.  ``smoothing``
        is recorded in the config as a label only (an ARPA file does not say how it was made).
        ``aliases`` renames ARPA words to vocabulary tokens (``None`` drops the word); see
        :func:`lmladder.baselines.arpa.read_arpa`.
        """
        from lmladder.baselines.arpa import read_arpa

        if smoothing == "add-k":
            raise ValueError("an ARPA file is a backoff chain; it cannot be an add-k model")
        tables, cross = read_arpa(path, vocab, aliases=aliases)
        model = cls(order=tables.order, smoothing=smoothing, cross_boundary=cross)
        model.tables_ = tables
        model.discounts_ = np.full((tables.order, 3), np.nan)
        model.vocab_ = vocab
        return model
