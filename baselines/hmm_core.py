"""What both HMM backends share: the model, exact scoring, decoding and inspection (numpy only).

The model
---------
A hidden Markov model over the token stream with ``K`` states: ``startprob`` pi (K,),
``transmat`` A (K, K), ``emissionprob`` B (K, V); all float64, rows sum to one.  The boundary
token (``<eos>``) is emitted like any word, and it ends a sentence: the hidden state of the
token after a boundary is drawn from pi, whatever came before.  The training stream is therefore
split into sentences (each ending with its boundary) and every sentence is an independent HMM
sequence started from pi -- exactly ``hmmlearn``'s ``fit(X, lengths)`` model, so both backends
fit, and score, the same thing.

Because a boundary resets the hidden state to pi, the two context policies give identical scores
for this model: ``reset_at_boundary=True`` restarts from ``init_state`` and feeds the boundary
(which yields pi), carrying across lines feeds the boundary to the running state (which also
yields pi).  Sentences are then independent, which is what lets the fast scoring path filter all
sentences of a split in parallel.

State API
---------
The state is the float64 ``(batch, K)`` distribution of the hidden state of the *next* token
given everything consumed so far, p(z_{t+1} | w_<=t): the filtered distribution of the last
token pushed one step through A.  ``step(q, x)`` conditions on ``x`` (q * B[:, x], normalized),
moves it through A (or resets it to pi if ``x`` is the boundary) and returns
ln sum_k q'_k B[k, :] for the token after ``x``.  ``init_state`` is pi (only a boundary is ever
fed to it, which resets to pi anyway).

All log-probabilities are natural logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lmladder.api import (
    Budget,
    ContextPolicy,
    LanguageModel,
    NotFittedError,
    Vocab,
    check_state_array,
    rank_counts,
    require,
)
from lmladder.baselines import hmm_kernel
from lmladder.checkpoint import config_mismatch

# --------------------------------------------------------------------------------------------
# Sentences and packed layout


def sentence_bounds(ids: np.ndarray, boundary_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and lengths (int64 ``(S,)``) of the sentences of a stream.

    A sentence runs up to and including its boundary token; a trailing piece without a boundary
    is a sentence too.  ``lengths.sum() == len(ids)``.
    """
    ids = np.asarray(ids)
    ends = np.flatnonzero(ids == boundary_id) + 1
    if len(ends) == 0 or ends[-1] != len(ids):
        ends = np.append(ends, len(ids))
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    lengths = (ends - starts).astype(np.int64)
    keep = lengths > 0
    return starts[keep], lengths[keep]


@dataclass(frozen=True)
class EMConfig:
    """Hyperparameters both HMM backends share (each backend adds its own and sets defaults).

    states: number of hidden states K.
    max_iterations: an explicit cap on EM iterations; ``None`` (default) runs until convergence
        (``tol``; with validation data also the torch backend's ``patience``) or the budget.
    tol: EM stops when the training log-likelihood (plus the log prior) improves by less than
        this (nats per token).  ``tol = 0`` with ``max_iterations = None`` needs a budget.
    emission_prior, transition_prior, start_prior: pseudo-counts added to the expected counts in
        every M-step (Dirichlet priors of concentration 1 + value); emission_prior > 0 keeps
        every word possible in every state.
    init_noise: scale of the log-normal noise of the random starting point.
    seed: seeds the starting point.
    """

    states: int = 16
    max_iterations: int | None = None
    tol: float = 1e-4
    emission_prior: float = 0.01
    transition_prior: float = 0.0
    start_prior: float = 0.0
    init_noise: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require(self, "states", self.states >= 1, ">= 1")
        require(self, "max_iterations", self.max_iterations is None or self.max_iterations >= 1,
                ">= 1 or None (until convergence)")
        require(self, "tol", self.tol >= 0, ">= 0")
        for key in ("emission_prior", "transition_prior", "start_prior"):
            require(self, key, getattr(self, key) >= 0, ">= 0 (a pseudo-count)")
        require(self, "init_noise", self.init_noise >= 0, ">= 0")
        require(self, "seed", self.seed >= 0, ">= 0")

    def unbounded(self, budget: Budget) -> bool:
        """Whether nothing would end EM: no cap, no tolerance and no budget."""
        return (self.max_iterations is None and self.tol == 0
                and budget.tokens is None and budget.steps is None and budget.seconds is None)


@dataclass(frozen=True)
class Packed:
    """Sentences laid out time-major, longest first (the layout of a ``PackedSequence``).

    At time ``t`` the sentences still running are rows ``0 .. batch_sizes[t]-1``; their tokens sit
    at packed positions ``offsets[t] .. offsets[t] + batch_sizes[t] - 1``.  Row ``i`` at time
    ``t + 1`` continues row ``i`` at time ``t``, so a recursion over ``t`` only ever slices
    prefixes.  ``source[p]`` is the stream position of packed position ``p`` (int64 ``(N,)``).
    """

    batch_sizes: np.ndarray  # int64 (T,)
    offsets: np.ndarray  # int64 (T + 1,)
    source: np.ndarray  # int64 (N,)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_steps(self) -> int:
        return len(self.batch_sizes)


def pack(starts: np.ndarray, lengths: np.ndarray) -> Packed:
    """Pack the sentences ``(starts, lengths)`` (any order) into the time-major layout."""
    order = np.argsort(-lengths, kind="stable")
    lens = lengths[order]
    steps = int(lens[0]) if len(lens) else 0
    batch_sizes = _batch_sizes(lens, steps)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)]).astype(np.int64)
    t_of = np.repeat(np.arange(steps, dtype=np.int64), batch_sizes)
    row_of = np.arange(offsets[-1], dtype=np.int64) - offsets[t_of]
    source = starts[order][row_of] + t_of
    return Packed(batch_sizes, offsets, source)


def _batch_sizes(lens_desc: np.ndarray, steps: int) -> np.ndarray:
    counts = np.bincount(lens_desc, minlength=steps + 1)  # sentences of each length
    longer = len(lens_desc) - np.cumsum(counts)  # sentences with length > t
    return longer[:steps].astype(np.int64)


def pack_stream(ids: np.ndarray, boundary_id: int) -> Packed:
    """Pack the sentences of a stream (see :func:`sentence_bounds`)."""
    return pack(*sentence_bounds(ids, boundary_id))


# --------------------------------------------------------------------------------------------
# Parameters


def initial_parameters(
    states: int, unigram: np.ndarray, rng: np.random.Generator, noise: float,
    emission_dtype: npt.DTypeLike = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random starting point for EM/gradient training: (pi (K,), A (K, K), B (K, V)); pi and A
    float64, B ``emission_dtype``.

    Emissions are the training unigram distribution ``unigram`` (V,) times log-normal noise of
    scale ``noise`` per entry, so every state starts near the data's word distribution but
    the symmetry between states is broken; pi and A rows are near-uniform with the same noise.
    B is drawn and normalized in float64 a block of rows at a time, so a float32 B (the torch
    backend's training dtype) is never held in float64 as well, and its values are those of the
    float64 B rounded.
    """
    k, v = states, len(unigram)
    pi, trans = (_lognormal(rng, noise, shape) for shape in ((k,), (k, k)))
    for p in (pi, trans):
        p /= p.sum(axis=-1, keepdims=True)
    emit = np.empty((k, v), dtype=emission_dtype)
    rows = max(1, 2**16 // v)
    for lo in range(0, k, rows):  # the generator's stream is the same in blocks as in one draw
        block = _lognormal(rng, noise, (min(rows, k - lo), v))
        block *= unigram[None, :]
        emit[lo : lo + rows] = block / block.sum(axis=1, keepdims=True)
    return pi, trans, emit


def _lognormal(rng: np.random.Generator, noise: float, shape: tuple[int, ...]) -> np.ndarray:
    """exp(noise * N(0, 1)) of ``shape``, computed in place: A can be GiBs."""
    x = rng.standard_normal(shape)
    x *= noise
    return np.exp(x, out=x)


def unigram(train: np.ndarray, vocab_size: int, pseudo: float = 1.0) -> np.ndarray:
    """Add-``pseudo`` unigram distribution of ``train`` (float64 ``(V,)``)."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + pseudo
    return counts / counts.sum()


def log_prior(params: tuple[np.ndarray, ...], pseudo: tuple[float, ...]) -> float:
    """ln of the Dirichlet priors (up to their constants): sum over the parameter arrays of
    ``pseudo * sum(ln p)``.  MAP-EM never lowers ln p(data) + this, so it is what convergence is
    judged on."""
    with np.errstate(divide="ignore"):
        return float(sum(w * np.log(p).sum() for p, w in zip(params, pseudo, strict=True) if w))


# --------------------------------------------------------------------------------------------
# The shared model


class HMMBase(LanguageModel):
    """An HMM language model with float64 numpy parameters ``startprob_``, ``transmat_``,
    ``emissionprob_``; backends implement ``fit`` (and may override the scoring fast path)."""
    family = "HMM"

    startprob_: np.ndarray | None = None
    transmat_: np.ndarray | None = None
    emissionprob_: np.ndarray | None = None
    example_: np.ndarray | None = None  # a training sentence shown decoded by ``inspect``

    # -- parameters -----------------------------------------------------------------------------

    def set_parameters(
        self, vocab: Vocab, startprob: np.ndarray, transmat: np.ndarray, emissionprob: np.ndarray
    ) -> HMMBase:
        """Use the given parameters (float64 (K,), (K, K), (K, V); rows sum to one) as the model.

        Used after training and to score a known HMM (e.g. a textbook example or hmmlearn's).
        C-contiguous float64 arrays are kept, not copied (B can be hundreds of MiB): do not
        change them afterwards.
        """
        pi, a, b = (np.ascontiguousarray(p, dtype=np.float64)
                    for p in (startprob, transmat, emissionprob))
        k, v = b.shape
        if pi.shape != (k,) or a.shape != (k, k) or v != len(vocab):
            raise ValueError(
                f"parameter shapes {pi.shape}, {a.shape}, {b.shape} do not fit K={k}, "
                f"V={len(vocab)}"
            )
        for name, p in (("startprob", pi), ("transmat", a), ("emissionprob", b)):
            if (not np.isfinite(p).all() or (p < 0).any()
                    or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-8)):
                raise ValueError(f"{name} rows must be probability distributions")
        self.vocab_ = vocab
        self.startprob_, self.transmat_, self.emissionprob_ = pi, a, b
        if self.example_ is None:
            self.example_ = np.zeros(0, dtype=np.int64)
        self._parameters_changed()
        return self

    def _parameters_changed(self) -> None:
        """Hook for backends that cache device copies of the parameters."""

    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.emissionprob_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load()")
        return self.startprob_, self.transmat_, self.emissionprob_

    @property
    def num_states(self) -> int:
        return self._params()[0].shape[0]

    def num_parameters(self) -> int:
        """Free parameters: (K - 1) + K (K - 1) + K (V - 1)."""
        k, v = self._params()[2].shape
        return (k - 1) + k * (k - 1) + k * (v - 1)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        pi, a, b = self._params()
        return {"startprob": pi, "transmat": a, "emissionprob": b, "example": self.example_}

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore pi (K,), A (K, K), B (K, V) with K = ``cfg.states`` and V the vocabulary size;
        arrays of other shapes, or rows that are not distributions, are refused."""
        k, v = self.cfg.states, len(self.vocab_)
        for name, want in (("emissionprob", (k, v)), ("transmat", (k, k)), ("startprob", (k,))):
            got = np.shape(arrays[name]) if name in arrays else want
            if len(got) == len(want) and got != want:  # the config's states, named
                raise ValueError(config_mismatch(name, got, want, self.config(), v))
        pi = check_state_array(arrays, "startprob", (k,))
        a = check_state_array(arrays, "transmat", (k, k))
        b = check_state_array(arrays, "emissionprob", (k, v))
        example = check_state_array(arrays, "example", (None,), "i").astype(np.int64)
        if len(example) and (example.min() < 0 or example.max() >= v):
            raise ValueError(f"array 'example' holds ids outside the vocabulary of {v}")
        self.example_ = example
        self.set_parameters(self.vocab_, pi, a, b)

    # -- state API ------------------------------------------------------------------------------

    def init_state(self, batch: int) -> np.ndarray:
        """pi repeated ``batch`` times: float64 ``(batch, K)``."""
        self._require_fitted()
        return np.tile(self._params()[0], (batch, 1))

    def step(self, state: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Consume ``tokens`` (int64 ``(B,)``) from predictive state distributions ``state``
        (float64 ``(B, K)``); return (ln p(next token) float64 ``(B, V)``, new ``(B, K)`` state)."""
        vocab = self._require_fitted()
        pi, a, b = self._params()
        tokens = np.asarray(tokens, dtype=np.int64)
        post = state * b[:, tokens].T
        z = post.sum(axis=1, keepdims=True)
        post = post / np.where(z > 0, z, 1.0)
        nxt = post @ a
        nxt[tokens == vocab.boundary_id] = pi
        with np.errstate(divide="ignore"):
            return np.log(nxt @ b), nxt

    # -- fast paths -----------------------------------------------------------------------------

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | w_<i) for every token (float64 ``(N,)``): all sentences filtered at once.

        Both context policies give the same result for this model (see the module docstring).
        """
        vocab = self._require_fitted()
        tokens = self._checked_ids(tokens)
        if len(tokens) == 0:
            return np.zeros(0)
        packed = pack_stream(tokens, vocab.boundary_id)
        return self._filter_logprobs(tokens, packed)

    def _filter_logprobs(self, tokens: np.ndarray, packed: Packed) -> np.ndarray:
        """Scaled forward filtering over a packed layout; returns stream-ordered ln-probs."""
        pi, a, b = self._params()
        return hmm_kernel.filter_logprobs(pi, a, b.T, tokens[packed.source], packed)

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """``(g, e)`` of each token, int64 ``(N, 2)`` (see ``LanguageModel.next_token_ranks``);
        all sentences at once, like :meth:`token_logprobs`."""
        vocab = self._require_fitted()
        pi, a, b = self._params()
        tokens = self._checked_ids(tokens)
        if len(tokens) == 0:
            return np.zeros((0, 2), dtype=np.int64)
        packed = pack_stream(tokens, vocab.boundary_id)
        words = tokens[packed.source]
        ranks = np.empty((packed.num_tokens, 2), dtype=np.int64)
        for step in hmm_kernel.forward(pi, a, b.T, words, packed.batch_sizes):
            with np.errstate(divide="ignore"):
                logp = np.log(step.prior @ b)  # same arithmetic as ``step``, so ties break alike
            ranks[step.rows] = rank_counts(logp, words[step.rows])
        result = np.empty_like(ranks)
        result[packed.source] = ranks
        return result

    # -- decoding and inspection ----------------------------------------------------------------

    def viterbi(self, ids: np.ndarray) -> tuple[np.ndarray, float]:
        """Most likely hidden-state path of one sentence ``ids`` (int64 ``(T,)``, started from pi).

        Returns (states int64 ``(T,)``, ln p(path, ids)).
        """
        pi, a, b = self._params()
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64), 0.0
        with np.errstate(divide="ignore"):
            log_a, log_b = np.log(a), np.log(b[:, ids].T)  # (K, K), (T, K)
            delta = np.log(pi) + log_b[0]
        back = np.zeros((len(ids), len(pi)), dtype=np.int64)
        for t in range(1, len(ids)):
            cand = delta[:, None] + log_a  # (from, to)
            back[t] = np.argmax(cand, axis=0)
            delta = cand[back[t], np.arange(len(pi))] + log_b[t]
        path = np.empty(len(ids), dtype=np.int64)
        path[-1] = int(np.argmax(delta))
        for t in range(len(ids) - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        return path, float(delta[path[-1]])

    def state_occupancy(self) -> np.ndarray:
        """Expected share of tokens each state emits under the model itself (float64 ``(K,)``).

        A sentence starts in pi, and after emitting a non-boundary token the chain moves through
        A; so the expected visits per sentence are v = pi (I - D A)^-1 with
        D = diag(1 - B[:, boundary]) (clipped below one so the inverse exists).
        """
        vocab = self._require_fitted()
        pi, a, b = self._params()
        go_on = np.minimum(1.0 - b[:, vocab.boundary_id], 1.0 - 1e-9)
        visits = np.linalg.solve((np.eye(len(pi)) - go_on[:, None] * a).T, pi)
        visits = np.maximum(visits, 0.0)
        return visits / visits.sum()

    def inspect(self, states: int = 10, words: int = 8) -> list[dict]:
        """Report tables: the top ``words`` words of the ``states`` most used states, and the
        Viterbi path of one training sentence."""
        vocab = self._require_fitted()
        _, _, b = self._params()
        share = self.state_occupancy()
        top_states = np.argsort(-share, kind="stable")[:states]

        def top_words(k: int) -> str:
            best = np.argsort(-b[k], kind="stable")[:words]
            return " ".join(f"{vocab.tokens[w]} ({b[k, w]:.2f})" for w in best)

        tables = [
            {
                "title": f"HMM: top {words} words of the {len(top_states)} most used of "
                f"{len(share)} states",
                "columns": ["state", "share of tokens", "top words (emission probability)"],
                "rows": [[int(k), round(float(share[k]), 4), top_words(k)] for k in top_states],
            }
        ]
        if self.example_ is not None and len(self.example_):
            path, logp = self.viterbi(self.example_)
            tables.append(
                {
                    "title": f"HMM: Viterbi state path of a training sentence "
                    f"(ln p(path, sentence) = {logp:.2f})",
                    "columns": ["position", "token", "state", "state's top words"],
                    "rows": [
                        [i, vocab.tokens[int(w)], int(s), top_words(int(s))]
                        for i, (w, s) in enumerate(zip(self.example_, path, strict=True))
                    ],
                }
            )
        return tables


def pick_example(train: np.ndarray, boundary_id: int, low: int = 6, high: int = 20) -> np.ndarray:
    """The first training sentence with ``low`` to ``high`` tokens (boundary included), or the
    first sentence, as int64 -- shown decoded by ``inspect``."""
    starts, lengths = sentence_bounds(train, boundary_id)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    ok = np.flatnonzero((lengths >= low) & (lengths <= high))
    i = int(ok[0]) if len(ok) else 0
    return np.asarray(train[starts[i] : starts[i] + lengths[i]], dtype=np.int64).copy()


@dataclass
class ConvergenceMonitor:
    """The one rule that ends an HMM's training passes for both backends, after hmmlearn's
    ``ConvergenceMonitor``: :meth:`report` each pass's objective (log-likelihood plus log prior,
    in nats); the history is kept as data.

    - ``monotone`` (EM, which never lowers the objective): converged when a pass gains less than
      ``tol`` nats per token.
    - otherwise (Adam): converged when ``patience`` passes in a row fail to beat the best
      objective by ``tol`` nats per token.

    Both objectives are bounded above, so either rule always ends training.
    """

    tol: float
    tokens: int  # the training tokens the objective sums over (its per-token scale)
    monotone: bool = True
    patience: int = 1
    history: list[float] = field(default_factory=list)
    _best: float = -math.inf
    _flat: int = 0

    def report(self, objective: float) -> bool:
        """Record one pass's objective; whether training has converged."""
        self.history.append(objective)
        if self.monotone:
            return len(self.history) > 1 and (
                (objective - self.history[-2]) / self.tokens < self.tol)
        if objective > self._best + self.tol * self.tokens:
            self._best, self._flat = objective, 0
        else:
            self._flat += 1
        return self._flat >= self.patience
