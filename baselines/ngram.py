"""Count-based n-gram language models: any order, six smoothings, ARPA import and export.

How it works
------------
``fit`` counts every n-gram of the training stream with numpy
(:mod:`lmladder.baselines.ngram_counts`), turns the counts into per-order ``alpha``/``gamma`` with
a smoothing strategy and compiles them into backoff tables -- for each order, the sorted n-gram
keys with the full interpolated ln p(w | h) and, per context, the ln backoff weight
(:mod:`lmladder.baselines.ngram_smoothing`).  That is exactly an ARPA file, so scoring is the
standard backoff query (:mod:`lmladder.baselines.ngram_backoff`), walked over the stream with
hashed tables by a compiled kernel, as KenLM's ``query`` does
(:mod:`lmladder.baselines.ngram_kernels`, Cython), and ARPA export/import is direct
(:mod:`lmladder.baselines.arpa`).  ``save`` also writes the hashed tables as one file that
``lmladder score`` memory-maps (:mod:`lmladder.baselines.ngram_image`).

Boundaries (KenLM-compatible)
-----------------------------
With ``cross_boundary=False`` (default) the boundary token (``<eos>``) plays ``</s>`` when it is
predicted and ``<s>`` when it is context: the history is cut after the last boundary, so a
sentence's first word is predicted from ``<s>`` alone, whatever came before.  The training stream
counts as preceded by one boundary.  Counting, adjusted counts and discounts follow KenLM's
``lmplz`` (Heafield et al. 2013), so ``kn5`` on PTB lands near ``lmplz -o 5`` (141.19).  With
``cross_boundary=True`` the boundary is an ordinary token and histories run across lines.

Pruning
-------
``prune > 0`` prunes the fitted backoff model by relative entropy (Stolcke 1998, as SRILM's
``ngram -prune``; :mod:`lmladder.baselines.ngram_prune`): n-grams whose removal raises the
perplexity by a relative amount below ``prune`` go, backoff weights are recomputed, and the pruned
model is what is scored, saved and exported to ARPA.  ``inspect()`` shows the n-grams per order
before and after.

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

import logging
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
from lmladder.baselines import ngram_image
from lmladder.baselines.arpa import BOS, EOS, parse_arpa, read_arpa, write_arpa
from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.baselines.ngram_counts import count_ngrams, history_lengths
from lmladder.baselines.ngram_prune import prune
from lmladder.baselines.ngram_smoothing import compile_tables, make_smoothing
from lmladder.files import refuse_link
from lmladder.process import return_free_memory

SmoothingName = Literal[
    "mle", "add-k", "witten-bell", "absolute-discounting", "kneser-ney", "modified-kneser-ney"
]
log = logging.getLogger(__name__)

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
        prune: Stolcke's relative-entropy pruning threshold (see module docstring); 0 keeps
            every n-gram.  Needs a smoothing that reserves backoff mass (not ``mle``/``add-k``).
        """

        order: int = 3
        smoothing: SmoothingName = "modified-kneser-ney"
        k: float = 1.0
        discount: float | None = None
        cross_boundary: bool = False
        prune: float = 0.0

        def __post_init__(self) -> None:
            require(self, "order", 1 <= self.order <= MAX_ORDER, f"in [1, {MAX_ORDER}]")
            require(self, "k", self.k > 0, "> 0")
            require(self, "prune", self.prune >= 0, ">= 0")
            if self.prune > 0 and self.smoothing in ("mle", "add-k"):
                raise ValueError(f"prune needs a smoothing with backoff mass, not "
                                 f"{self.smoothing!r}: {self.smoothing} has no backoff form "
                                 "that pruned n-grams could fall back to")
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
        self.unpruned_sizes_: list[int] | None = None  # n-grams per order before pruning

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
        tables = compile_tables(counts, smoothing)
        del counts
        self.unpruned_sizes_ = tables.sizes() if cfg.prune > 0 else None
        self.tables_ = prune(tables, cfg.prune)
        del tables
        return_free_memory()  # the counting's temporaries, before anything else is built
        used = smoothing.discounts()
        self.discounts_ = np.full((cfg.order, 3), np.nan)
        for j, d in enumerate(used):
            self.discounts_[j, : len(d)] = d
        self.vocab_ = vocab
        seconds = clock()
        if callback:
            callback(Progress(2, 2, "stage", {}))
        notes = {"ngrams_per_order": self.tables_.sizes()}
        if self.unpruned_sizes_ is not None:
            notes["ngrams_per_order_unpruned"] = self.unpruned_sizes_
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
        return seq, np.minimum(hist, cap, out=hist)

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | history), float64 ``(N,)``: one backoff query per position, in one
        compiled pass over the stream (the first call hashes the tables, unless they were loaded
        from a saved model's ``tables.bin``).

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
        tokens = self._checked_ids(tokens)
        out = np.empty((len(tokens), 2), dtype=np.int64)
        for rows, logp in self.distribution_chunks(tokens, context, chunk):
            out[rows] = rank_counts(logp, tokens[rows])
        return out

    def distribution_chunks(self, tokens: np.ndarray, context: ContextPolicy, chunk: int = 0):
        """Yield ``(rows, logp)``: the float64 ``(len(rows), V)`` next-token ln-distributions
        before ``tokens[rows]``, ``chunk`` positions at a time (default: ~4M floats)."""
        tables = self._require_tables()
        seq, hist = self._history(tokens, context)
        n, v = self.cfg.order, len(self.vocab_)
        chunk = chunk or max(1, (1 << 22) // v)
        for lo in range(0, len(hist), chunk):
            t = np.arange(lo + 1, min(lo + chunk, len(hist)) + 1)
            h = np.full((len(t), n - 1), -1, dtype=np.int64)
            for lvl in range(1, n):
                ok = hist[t - 1] >= lvl
                h[ok, n - 1 - lvl] = seq[t[ok] - lvl]
            yield t - 1, tables.distributions(h)

    # -- bookkeeping ----------------------------------------------------------------------------

    def num_parameters(self) -> int:
        """Stored probabilities plus non-zero backoff weights (the numbers of the ARPA file)."""
        return self._require_tables().num_parameters()

    def inspect(self) -> list[dict]:
        """One table: n-grams per order (and before pruning, if pruned) and the discounts."""
        tables = self._require_tables()
        before = self.unpruned_sizes_
        rows = []
        for j in range(1, self.cfg.order + 1):
            d = [] if self.discounts_ is None else self.discounts_[j - 1]
            rows.append([j, *([] if before is None else [before[j - 1]]), tables.sizes()[j - 1],
                         *[None if not np.isfinite(x) else round(float(x), 4) for x in d]])
        pruned = "" if before is None else f", pruned at {self.cfg.prune:g}"
        return [{
            "title": f"{self.cfg.smoothing} {self.cfg.order}-gram{pruned}: n-grams and discounts",
            "columns": ["order", *([] if before is None else ["n-grams before pruning"]),
                        "n-grams", "D1", "D2", "D3+"],
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
        if self.unpruned_sizes_ is not None:
            arrays["unpruned_sizes"] = np.array(self.unpruned_sizes_, dtype=np.int64)
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
            # asarray, not astype: the tables are most of a loading process's memory
            logp.append(np.asarray(check_state_array(arrays, f"logp_{j}", (size,)), np.float64))
            bow.append(np.asarray(check_state_array(arrays, f"bow_{j}", (size,)), np.float64))
            k = np.asarray(k, dtype=np.int64)
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
        self.unpruned_sizes_ = None
        if "unpruned_sizes" in arrays:  # written for pruned models only
            sizes = check_state_array(arrays, "unpruned_sizes", (n,), "i")
            self.unpruned_sizes_ = [int(x) for x in sizes]

    # -- the saved query image ------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """The checkpoint (``model.json``, ``state.npz``) and the query image ``tables.bin``
        (:mod:`lmladder.baselines.ngram_image`) that ``lmladder score`` memory-maps.  A stale
        image is removed first and the new one written last, so a save interrupted anywhere
        leaves either none (scoring rebuilds it from ``state.npz``) or the one of this state."""
        stale = refuse_link(Path(directory) / ngram_image.FILE_NAME, ngram_image.WHERE)
        stale.unlink(missing_ok=True)
        folder = super().save(directory)
        ngram_image.save(self._require_tables(), self.vocab_, folder,
                         cross_boundary=self.cfg.cross_boundary)
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> NGramLM:
        """The checkpoint, scoring with its saved image when the folder has one that fits (a
        missing or foreign ``tables.bin`` is rebuilt in memory on first use)."""
        model = super().load(directory)
        path = Path(directory) / ngram_image.FILE_NAME
        if path.exists():
            try:
                image = ngram_image.open_image(path)
            except (ngram_image.ImageError, OSError) as err:
                log.warning("%s; scoring rebuilds the tables from state.npz", err)
            else:
                model._attach(image, path)
        return model

    def _attach(self, image: ngram_image.Image, path: Path) -> None:
        tables, vocab = self._require_tables(), self._require_fitted()
        if not ngram_image.fits(image, order=self.cfg.order, vocab_size=len(vocab),
                                vocab_sha256=vocab.sha256,
                                cross_boundary=self.cfg.cross_boundary, flat=tables.flat,
                                ngrams=[len(k) for k in tables.keys[1:]]):
            log.warning("%s does not fit the model's state (another model's tables?); scoring "
                        "rebuilds them from state.npz", path)
            return
        tables._hashed = image

    # -- ARPA -----------------------------------------------------------------------------------

    def to_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (log10 probabilities; :mod:`lmladder.baselines.arpa`)."""
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
        :func:`lmladder.baselines.arpa.read_arpa`.  A model whose distributions do not sum to
        one (a hand-made file, say) is read with a log warning; ``arpa:PATH`` refuses it.
        """
        if smoothing == "add-k":
            raise ValueError("an ARPA file is a backoff chain; it cannot be an add-k model")
        tables, cross = read_arpa(path, vocab, aliases=aliases, strict_sums=False)
        return cls.from_tables(tables, vocab, cross_boundary=cross, smoothing=smoothing)

    @classmethod
    def from_tables(cls, tables: BackoffTables, vocab: Vocab, *, cross_boundary: bool,
                    smoothing: SmoothingName = "modified-kneser-ney") -> NGramLM:
        """A fitted model over ``vocab`` that scores with ``tables`` (``smoothing``: a label)."""
        model = cls(order=tables.order, smoothing=smoothing, cross_boundary=cross_boundary)
        model.tables_ = tables
        model.discounts_ = np.full((tables.order, 3), np.nan)
        model.vocab_ = vocab
        return model


class ArpaLM(LanguageModel):
    """A backoff LM read from an ARPA file (``arpa:PATH``: KenLM, SRILM, ``lmladder export-arpa``).

    ``fit`` reads the file onto the dataset's vocabulary and trains nothing (0 training tokens).
    The file's model is taken as it is; only the words are matched, so that every next-token
    distribution sums to one over the dataset's vocabulary:

    * A dataset token the file lists is that word; the boundary token is ``<s>``/``</s>`` (or its
      own name in a file without them; :mod:`lmladder.baselines.arpa`).
    * Dataset tokens the file lacks are the file's ``<unk>``, as in KenLM and SRILM: in a history
      they are ``<unk>``, and predicted, the ``k`` dataset tokens that are ``<unk>`` (the file's
      own ``<unk>`` among them, when the dataset has a token of that name) share its probability,
      ``p(<unk> | h) / k`` each.  A file without ``<unk>`` that lacks a dataset token is refused.
    * Words of the file that are not dataset tokens are dropped with their n-grams and the model
      renormalised over the rest (unigrams rescaled, backoff weights recomputed; SRILM's
      ``ngram -limit-vocab -renorm``).

    The saved model holds the tables read, so it scores without the file; like ``hf:``, its config
    still names the file, which must exist to build or load it.
    """

    @dataclass(frozen=True)
    class Config:
        """source: the ARPA file (log10 probabilities, as KenLM and SRILM write them)."""

        source: str

        def __post_init__(self) -> None:
            require(self, "source", Path(self.source).expanduser().is_file(),
                    "an existing ARPA file")

    family = "n-gram"
    UNK = "<unk>"

    def __init__(self, **config) -> None:
        super().__init__(**config)
        self.ngram_: NGramLM | None = None  # the file's model over its words the dataset shares
        self.table_ids_: np.ndarray | None = None  # int64 (V,): dataset id -> id in ngram_
        self.share_: np.ndarray | None = None  # float64 (V,): -ln k for the k tokens of a table id

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Read the file onto ``vocab`` (see the class docstring); ``train`` is not used."""
        clock = Stopwatch()
        path = Path(self.cfg.source).expanduser()
        sections = parse_arpa(path)
        table_ids, unk = _table_ids(vocab, {f[1] for f in sections[0]}, path)
        table_vocab = _table_vocabulary(vocab, table_ids, unk)
        tables, cross = read_arpa(path, table_vocab, sections=sections)
        self._attach(vocab, NGramLM.from_tables(tables, table_vocab, cross_boundary=cross),
                     table_ids)
        shared = int((self.share_ < 0).sum())
        return FitReport(train_tokens=0, steps=0, seconds=clock(), notes={
            "source": str(path), "ngrams_per_order": tables.sizes(), "tokens_as_unk": shared})

    def _attach(self, vocab: Vocab, ngram: NGramLM, table_ids: np.ndarray) -> None:
        self.vocab_, self.ngram_, self.table_ids_ = vocab, ngram, table_ids
        self.share_ = -np.log(np.bincount(table_ids)[table_ids].astype(np.float64))

    def _inner(self) -> NGramLM:
        self._require_fitted()
        assert self.ngram_ is not None
        return self.ngram_

    # -- the contract, through the word mapping ----------------------------------------------

    def init_state(self, batch: int) -> np.ndarray:
        return self._inner().init_state(batch)

    def step(self, state: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logp, state = self._inner().step(state, self.table_ids_[np.asarray(tokens)])
        return logp[:, self.table_ids_] + self.share_, state

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | history), float64 ``(N,)``: the file's model, in one compiled pass."""
        tokens = self._checked_ids(tokens)
        inner = self._inner().token_logprobs(self.table_ids_[tokens], context=context)
        return inner + self.share_[tokens]

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy(), chunk: int = 0
    ) -> np.ndarray:
        """``(g, e)`` of each token, int64 ``(N, 2)``, over the dataset's vocabulary."""
        tokens = self._checked_ids(tokens)
        out = np.empty((len(tokens), 2), dtype=np.int64)
        chunks = self._inner().distribution_chunks(self.table_ids_[tokens], context, chunk)
        for rows, logp in chunks:
            out[rows] = rank_counts(logp[:, self.table_ids_] + self.share_, tokens[rows])
        return out

    def num_parameters(self) -> int:
        return self._inner().num_parameters()

    def inspect(self) -> list[dict]:
        inner = self._inner()
        shared = int((self.share_ < 0).sum())
        return [{
            "title": f"ARPA {inner.cfg.order}-gram {Path(self.cfg.source).name}: n-grams read "
                     f"({shared} dataset tokens share <unk>)",
            "columns": ["order", "n-grams"],
            "rows": [[j, size] for j, size in enumerate(inner.tables_.sizes(), 1)],
        }]

    def _state_arrays(self) -> dict[str, np.ndarray]:
        inner = self._inner()
        return {**inner._state_arrays(), "table_ids": self.table_ids_,
                "cross_boundary": np.array([inner.cfg.cross_boundary], dtype=np.int64)}

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Rebuild the file's model from its tables and the word mapping, refusing a mapping that
        does not fit the vocabulary (one table id per dataset token, ids ``0..T-1`` all used)."""
        vocab = self._require_fitted()
        ids = check_state_array(arrays, "table_ids", (len(vocab),), "i").astype(np.int64)
        if len(ids) and not np.array_equal(np.unique(ids), np.arange(ids.max() + 1)):
            raise ValueError("array 'table_ids' must use every table id 0..T-1")
        cross = check_state_array(arrays, "cross_boundary", (1,), "i")
        order = sum(1 for k in arrays if k.startswith("keys_"))
        table_vocab = _table_vocabulary(vocab, ids)
        inner = NGramLM(order=max(order, 1), cross_boundary=bool(cross[0]))
        inner.vocab_ = table_vocab
        inner._load_state_arrays(arrays)
        self._attach(vocab, inner, ids)


def _table_ids(vocab: Vocab, words: set[str], path: Path) -> tuple[np.ndarray, int | None]:
    """The table id of each dataset token (class docstring), int64 ``(V,)``, numbered in dataset
    order with the tokens that are ``<unk>`` sharing one id; and that id (None if no token is)."""
    sentence_marks = BOS in words or EOS in words

    def listed(token: str) -> bool:
        return token in words and token not in (BOS, EOS) or (
            token == vocab.boundary and sentence_marks)

    if not listed(vocab.boundary):
        raise ValueError(f"{path}: neither <s>/</s> nor the boundary token {vocab.boundary!r} "
                         "is listed; the file cannot mark line ends of this dataset")
    missing = [t for t in vocab.tokens if not listed(t)]
    if missing and ArpaLM.UNK not in words:
        raise ValueError(f"{path}: no unigram for {len(missing)} dataset token(s) "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}) and "
                         f"no {ArpaLM.UNK} to score them as; use a file made with this "
                         "vocabulary or one with <unk>")
    names: dict[str, int] = {}
    for t in vocab.tokens:
        names.setdefault(t if listed(t) else ArpaLM.UNK, len(names))
    ids = np.array([names[t if listed(t) else ArpaLM.UNK] for t in vocab.tokens], dtype=np.int64)
    return ids, names.get(ArpaLM.UNK)


def _table_vocabulary(vocab: Vocab, table_ids: np.ndarray, unk: int | None = None) -> Vocab:
    """The file's words as a vocabulary over table ids: id ``unk`` is named ``<unk>`` (so that
    :func:`read_arpa` finds it), every other id after its first dataset token (the names are not
    used once the tables are read)."""
    first = np.zeros(int(table_ids.max()) + 1, dtype=np.int64)
    first[table_ids[::-1]] = np.arange(len(table_ids))[::-1]
    tokens = [ArpaLM.UNK if i == unk else vocab.tokens[d] for i, d in enumerate(first)]
    return Vocab(tokens, boundary=vocab.boundary)
