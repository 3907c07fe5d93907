"""``hmm``: a batched HMM language model in torch, trained by exact EM or by Adam, on CPU or CUDA.

The model is the one :mod:`lmladder.baselines.hmm_core` describes (sentences started from pi, the
boundary emitted like a word).  What this backend adds is speed:

* **Packed sentences.**  The training stream is split into sentences, sorted by length and cut
  into chunks of about ``batch_tokens`` tokens; in each chunk the sentences are laid out
  time-major, longest first, so the forward and backward recursions advance all sentences of a
  chunk with one ``(n, K) @ (K, K)`` matmul per time step and never touch padding.
* **Scaled forward-backward** (Rabiner 1989, section V.A): alpha is renormalized at every step,
  the per-step normalizers c_t are the per-token likelihoods p(w_t | w_<t) and
  ln p(sentence) = sum_t ln c_t; beta is scaled by the same c_t.  Expected counts: state
  posteriors gamma = alpha * beta, transition counts A * (sum_t alpha_t^T (beta_{t+1} *
  b_{t+1} / c_{t+1})) as one matmul over the chunk, emission counts by ``index_add_``.
* **Exact M-step** with pseudo-counts (Dirichlet priors): ``emission_prior`` > 0 keeps every word
  possible in every state.
* **Gradient training** (``trainer="adam"``): the same forward recursion under autograd gives the
  exact marginal log-likelihood of a chunk; Adam updates unconstrained log-parameters (softmax
  rows), one chunk per step, with the priors as the same MAP terms as EM.

Training runs in ``dtype`` (float32 by default; expected counts are summed over chunks in
float64); the learned parameters are kept as float64 numpy arrays and scoring is float64 on the
model's device.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    Progress,
    ProgressCallback,
    Stopwatch,
    Vocab,
)
from lmladder.baselines.hmm_core import (
    EMConfig,
    HMMBase,
    initial_parameters,
    pack_stream,
    pick_example,
    unigram,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SPLIT_NOISE = 0.1  # scale of the log-normal noise that tells the two halves of a split apart


@dataclass(frozen=True)
class HMMConfig(EMConfig):
    """Hyperparameters of the torch HMM: those of :class:`EMConfig` (``max_iterations`` counts
    Adam epochs under ``trainer="adam"``) plus

    trainer: ``"em"`` (Baum-Welch, one iteration = one pass) or ``"adam"`` (gradient ascent on the
        marginal log-likelihood, one step per chunk).
    patience: with validation data, stop after this many passes without a better validation
        likelihood; the parameters with the best validation likelihood are kept.
    batch_tokens: tokens per chunk of sentences (memory ~ 5 x batch_tokens x K x dtype bytes).
    dtype: training precision.
    lr: Adam learning rate.
    grow_from: if set, EM starts with this many states and splits every state in two (see
        :func:`split_states`) until there are ``states`` (which must be grow_from * 2^n); the
        smaller stages run at most ``stage_iterations`` EM iterations each.  A large model then
        starts where a cheaper one converged instead of from noise.
    stage_iterations: EM iterations of each smaller stage.
    threads: torch intra-op threads while fitting and scoring (restored afterwards); ``None``
        leaves torch's setting.  One thread is as fast for small K and immune to the
        slow-down several threads suffer when other processes share the cores.

    The prior pseudo-counts act as the same MAP terms under Adam.
    """

    states: int = 64
    max_iterations: int = 50
    trainer: Literal["em", "adam"] = "em"
    patience: int = 2
    batch_tokens: int = 32768
    dtype: Literal["float32", "float64"] = "float32"
    lr: float = 0.05
    grow_from: int | None = None
    stage_iterations: int = 10
    threads: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_iterations < 1 or self.batch_tokens < 1:
            raise ValueError("max_iterations and batch_tokens must be >= 1")
        if self.grow_from is not None and (
            self.grow_from < 1 or _stage_sizes(self.grow_from, self.states)[0] != self.grow_from
        ):
            raise ValueError(f"states={self.states} is not grow_from={self.grow_from} * 2^n")
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be >= 1 or None")


class HMM(HMMBase):
    """HMM language model trained in torch (EM or Adam), batched over sentences."""

    Config = HMMConfig
    devices = ("cpu", "cuda")
    revision = 1

    def __init__(self, **config) -> None:
        super().__init__(**config)
        _torch()  # fail here, at build time, if torch is missing
        self._cache: tuple[str, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

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
        """Train on the sentences of ``train`` (int64 ids of ``vocab``).

        ``budget.steps`` counts EM iterations (``trainer="em"``) or Adam steps (one per chunk);
        ``budget.tokens`` counts training tokens processed; a ``seconds`` budget is checked
        between EM iterations (stopping before one the previous iteration's time says would
        not fit; at least one always runs) and between Adam steps.
        """
        with _torch().threads(self.cfg.threads):
            return self._fit(train, vocab, budget, valid, callback)

    def _fit(self, train, vocab, budget, valid, callback) -> FitReport:
        cfg = self.cfg
        clock = Stopwatch()
        train = np.asarray(train, dtype=np.int64)
        kernels = _torch()
        dtype, dev = cfg.dtype, self.device
        chunks = kernels.make_chunks(train, vocab.boundary_id, cfg.batch_tokens, dev)
        rng = np.random.default_rng(cfg.seed)
        sizes = _stage_sizes(cfg.grow_from, cfg.states)
        params = initial_parameters(sizes[0], unigram(train, len(vocab)), rng, cfg.init_noise)
        self.vocab_ = vocab
        self.example_ = pick_example(train, vocab.boundary_id)
        tally = _Tally(clock, budget, len(train), callback)
        for k in sizes[:-1]:  # smaller models, each split in two for the next (grow_from)
            run = kernels.EM(cfg, chunks, params, dtype, dev)
            self._passes(run, tally, cfg.stage_iterations, None, stage=k)
            params = split_states(run.parameters(), rng)
            tally.last *= 4.0  # an EM iteration costs ~K^2: predict the next stage's first
        run = (
            kernels.EM(cfg, chunks, params, dtype, dev)
            if cfg.trainer == "em"
            else kernels.Adam(cfg, chunks, params, dtype, dev, rng)
        )
        best_nll, params = self._passes(run, tally, cfg.max_iterations, valid, stage=cfg.states)
        self.set_parameters(vocab, *params)
        notes = {"trainer": cfg.trainer, "passes": tally.passes, "chunks": len(chunks),
                 "stages": sizes}
        if valid is not None:
            notes["valid_nll"] = best_nll
        return FitReport(tally.tokens, tally.steps, clock(), tally.history, notes)

    def _passes(self, run, tally: _Tally, max_passes: int, valid, *, stage: int):
        """Training passes of ``run`` until convergence, ``max_passes``, the budget, or (with
        ``valid``) ``patience`` passes without a better validation likelihood.  Returns (best
        validation nll or nan, the parameters to keep: best-validation or last)."""
        cfg, budget, clock = self.cfg, tally.budget, tally.clock
        params = run.parameters()
        best = (math.inf, params)
        stale, passes, prev = 0, 0, -math.inf
        while passes < max_passes:
            seconds = clock()
            if tally.passes and (
                budget.exhausted(tokens=tally.tokens, steps=tally.steps, seconds=seconds)
                or (run.monotone and budget.seconds is not None
                    and seconds + tally.last > budget.seconds)
            ):
                break
            ll, objective, n_steps, n_tokens, complete = run.one_pass(
                budget, clock, tally.steps, tally.tokens
            )
            passes += 1
            tally.passes += 1
            tally.steps += n_steps
            tally.tokens += n_tokens
            tally.last = clock() - seconds
            record = {"states": stage, "pass": tally.passes, "steps": tally.steps,
                      "train_nll": -ll / max(n_tokens, 1), "seconds": clock()}
            params = run.parameters()
            if valid is not None:
                self.set_parameters(self.vocab_, *params)
                record["valid_nll"] = -float(np.mean(self.token_logprobs(valid)))
                if record["valid_nll"] < best[0]:
                    best, stale = (record["valid_nll"], params), 0
                else:
                    stale += 1
            tally.history.append(record)
            log.debug("HMM pass %d: %s", tally.passes, record)
            if tally.callback is not None:
                tally.callback(Progress(tally.steps, budget.steps or None, "steps",
                                        {"train_nll": record["train_nll"]}))
            if not complete or stale >= cfg.patience:
                break
            if run.monotone and (objective - prev) / tally.train_tokens < cfg.tol:
                break
            prev = objective
        return (best[0], best[1]) if valid is not None and passes else (math.nan, params)

    # -- scoring on the model's device ----------------------------------------------------------

    def _parameters_changed(self) -> None:
        self._cache = None

    def _device_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._cache is None or self._cache[0] != self.device:
            pi, a, b = _torch().tensors(self._params(), "float64", self.device)
            self._cache = (self.device, pi, a, b.T.contiguous())
        return self._cache[1:]

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | w_<i) (float64 ``(N,)``): all sentences filtered at once in float64 on
        the model's device.  Both context policies give the same scores (see hmm_core)."""
        with _torch().threads(self.cfg.threads):
            return self._token_logprobs(tokens)

    def _token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        vocab = self._require_fitted()
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(tokens) == 0:
            return np.zeros(0)
        packed = pack_stream(tokens, vocab.boundary_id)
        return _torch().filter_logprobs(*self._device_params(), tokens, packed)


def _torch():
    """The torch kernels, imported when an HMM is built or used (not when this module is)."""
    from lmladder.baselines import hmm_torch

    return hmm_torch


@dataclass
class _Tally:
    """Counters shared by the training passes of all stages of one ``fit``."""

    clock: Stopwatch
    budget: Budget
    train_tokens: int
    callback: ProgressCallback | None
    steps: int = 0
    tokens: int = 0
    passes: int = 0
    last: float = 0.0  # seconds of the last pass
    history: list = field(default_factory=list)


def _stage_sizes(grow_from: int | None, states: int) -> list[int]:
    sizes = [states]
    while grow_from is not None and sizes[0] > grow_from:
        sizes.insert(0, sizes[0] // 2)
    return sizes


def split_states(
    params: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split every state of (pi (K,), A (K, K), B (K, V)) in two: 2K states, float64.

    Copies k and k + K share state k's emissions and its start and incoming probability half
    each, so before the noise the split model gives exactly the same likelihood; log-normal
    noise of scale ``SPLIT_NOISE`` then lets EM pull the copies apart (state splitting, as in
    Petrov et al. 2006 for grammars).
    """
    pi, a, b = params

    def noisy(x):
        x = x * np.exp(SPLIT_NOISE * rng.standard_normal(x.shape))
        return x / x.sum(axis=-1, keepdims=True)

    return (
        noisy(np.concatenate([pi, pi]) / 2),
        noisy(np.tile(a, (2, 2)) / 2),
        noisy(np.concatenate([b, b])),
    )


