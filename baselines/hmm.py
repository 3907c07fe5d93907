"""``hmm``: a batched HMM language model trained by exact EM (numpy on the CPU, torch on CUDA) or
by Adam (torch).

The model is the one :mod:`lmladder.baselines.hmm_core` describes (sentences started from pi, the
boundary emitted like a word).  What this backend adds is speed:

* **Packed sentences.**  The training stream is split into sentences, sorted by length and cut
  into chunks; in each chunk the sentences are laid out time-major, longest first, so the
  forward and backward recursions advance all sentences of a chunk with one ``(n, K) @ (K, K)``
  matmul per time step and never touch padding.
* **One streaming forward-backward** (:mod:`~lmladder.baselines.hmm_kernel`, scaled as in
  Rabiner 1989, section V.A): per-token likelihoods are the per-step normalizers c_t, and the
  E-step keeps only one chunk's alpha lattice, turning it into posteriors and summing the
  transition pairs step by step on the way back.  EM chunks hold at most ``batch_tokens``
  tokens and a lattice of 8 MiB (or the size of A): memory stays near the parameters' own.
* **Blocked emissions** (``emission_blocks``, Chiu & Rush 2020): a state emits only its group's
  word cluster, so a token costs (K/M)^2 instead of K^2.
* **Exact M-step** with pseudo-counts (Dirichlet priors): ``emission_prior`` > 0 keeps every word
  possible in every state.
* **Gradient training** (``trainer="adam"``): the same forward recursion under autograd gives the
  exact marginal log-likelihood of a chunk; Adam updates unconstrained log-parameters (softmax
  rows), one chunk per step, with the priors as the same MAP terms as EM.
* **No torch on the CPU.**  EM (:mod:`~lmladder.baselines.hmm_em`) and the kernel run on numpy
  arrays or torch tensors alike; on the CPU the model fits by EM and scores with numpy alone (its
  process as lean as hmmlearn's), and imports torch only for a CUDA device or ``trainer="adam"``.

Training runs in ``dtype`` (float32 by default; start and transition counts are summed in
float64, emission counts in ``dtype``; B starts and stays in ``dtype``); the learned parameters
are kept as float64 numpy arrays (B widened on first use after ``fit``) and scoring is float64 on
the model's device.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    Progress,
    ProgressCallback,
    Stopwatch,
    ValidationTimer,
    Vocab,
    require,
)
from lmladder.baselines import hmm_em, hmm_kernel
from lmladder.baselines.hmm_core import (
    ConvergenceMonitor,
    EMConfig,
    HMMBase,
    initial_parameters,
    pack_stream,
    pick_example,
    unigram,
)

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
    batch_tokens: tokens per Adam step (memory ~ 5 x batch_tokens x K x dtype bytes); EM chunks
        hold at most this many, fewer where the lattice would pass 8 MiB (or the size of A).
    dtype: training precision.
    lr: Adam learning rate.
    grow_from: if set, EM starts with this many states and splits every state in two (see
        :func:`split_states`) until there are ``states`` (which must be grow_from * 2^n); the
        smaller stages run at most ``stage_iterations`` EM iterations each.  A large model then
        starts where a cheaper one converged instead of from noise.
    stage_iterations: EM iterations of each smaller stage.
    threads: threads of numpy's BLAS (by threadpoolctl) and, where torch runs, of torch while
        fitting and scoring (restored afterwards); ``None`` leaves their settings.  One thread
        is as fast for small K and immune to the slow-down several threads suffer when other
        processes share the cores.
    emission_blocks: M > 1 gives blocked emissions (Chiu & Rush 2020): the vocabulary is split
        into M word clusters (words sorted by training frequency and dealt round-robin, so each
        cluster holds frequent and rare words; see :func:`word_groups`) and the states into M
        equal groups, and a state emits only its group's cluster.  A token then costs (K/M)^2
        instead of K^2.  ``states`` must be a multiple of M; EM only, without ``grow_from``.

    The prior pseudo-counts act as the same MAP terms under Adam.
    """

    states: int = 64
    trainer: Literal["em", "adam"] = "em"
    patience: int = 2
    batch_tokens: int = 32768
    dtype: Literal["float32", "float64"] = "float32"
    lr: float = 0.05
    grow_from: int | None = None
    stage_iterations: int = 10
    threads: int | None = None
    emission_blocks: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "emission_blocks", self.emission_blocks >= 1
                and self.states % self.emission_blocks == 0,
                f">= 1 and divide states={self.states}")
        if self.emission_blocks > 1 and (self.trainer != "em" or self.grow_from is not None):
            raise ValueError(f"emission_blocks={self.emission_blocks} needs trainer='em' and no "
                             "grow_from (splitting states would break the blocks)")
        require(self, "patience", self.patience >= 1, ">= 1")
        require(self, "batch_tokens", self.batch_tokens >= 1, ">= 1")
        require(self, "lr", self.lr > 0, "> 0")
        require(self, "stage_iterations", self.stage_iterations >= 1, ">= 1")
        require(self, "threads", self.threads is None or self.threads >= 1, ">= 1 or None")
        require(self, "grow_from", self.grow_from is None or 1 <= self.grow_from <= self.states,
                f"in [1, states={self.states}] or None")
        if self.grow_from is not None and (
            _stage_sizes(self.grow_from, self.states)[0] != self.grow_from
        ):
            raise ValueError(f"states={self.states} is not grow_from={self.grow_from} * 2^n")


class HMM(HMMBase):
    """HMM language model trained by EM (numpy on the CPU, torch on CUDA) or Adam (torch),
    batched over sentences."""

    Config = HMMConfig
    devices = ("cpu", "cuda")
    revision = 2  # 2: no hidden 50-iteration cap; validation inside the time budget

    _emissionprob: np.ndarray | None = None
    _widen: Callable[[], np.ndarray] | None = None  # makes B float64 on first use (see below)

    def __init__(self, **config) -> None:
        super().__init__(**config)
        if self.cfg.trainer == "adam":
            _torch("trainer='adam'")  # fail here, at build time, if torch is missing
        self._cache: tuple | None = None

    def to(self, device: str) -> HMM:
        """Move the model to ``device``: ``"cpu"`` (numpy) or a CUDA device (torch)."""
        super().to(device)
        if not self._on_cpu():
            _torch(f"device {device!r}")
        return self

    def _on_cpu(self) -> bool:
        return self.device.split(":")[0] == "cpu"

    def _torch_use(self) -> str | None:
        """Why this model needs torch (a CUDA device, the Adam trainer); ``None``: it does not."""
        if not self._on_cpu():
            return f"device {self.device!r}"
        return "trainer='adam'" if self.cfg.trainer == "adam" else None

    def _arrays(self):
        """Where EM and scoring keep their arrays: numpy on the CPU, torch on another device."""
        if self._on_cpu():
            return hmm_em.NUMPY
        return _torch(f"device {self.device!r}").TorchArrays(self.device)

    def _threads(self) -> contextlib.AbstractContextManager:
        """``cfg.threads`` for numpy's BLAS and, if this model uses torch, for torch."""
        scope = contextlib.ExitStack()
        scope.enter_context(hmm_em.NUMPY.threads(self.cfg.threads))
        if (why := self._torch_use()) is not None:
            scope.enter_context(_torch(why).TorchArrays.threads(self.cfg.threads))
        return scope

    @property
    def emissionprob_(self) -> np.ndarray | None:
        """B (K, V) float64.  After training, B is widened from the training dtype here, on
        first use, not at the end of ``fit``: a fit then never holds both copies at once."""
        if self._widen is not None:
            widen, self._widen = self._widen, None
            self.set_parameters(self.vocab_, self.startprob_, self.transmat_, widen())
        return self._emissionprob

    @emissionprob_.setter
    def emissionprob_(self, b: np.ndarray | None) -> None:
        self._widen, self._emissionprob = None, b

    def _adopt(self, vocab: Vocab, pi: np.ndarray, a: np.ndarray,
               widen: Callable[[], np.ndarray]) -> None:
        """Use trained float64 pi and A, and the B that ``widen()`` returns when first needed."""
        self.vocab_ = vocab
        self.startprob_, self.transmat_, self.emissionprob_ = pi, a, None
        self._widen = widen
        self._parameters_changed()

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

        Training runs until convergence (``tol``; with ``valid`` also ``patience``), the
        explicit ``max_iterations`` if one is set, or the budget.  ``budget.steps`` counts EM
        iterations (``trainer="em"``) or Adam steps (one per chunk); ``budget.tokens`` counts
        training tokens processed.  A ``seconds`` budget covers the whole fit, validation
        included: it is checked between EM iterations (stopping before one that, judged by the
        previous iteration and validation, would not fit; at least one always runs) and between
        Adam steps, always keeping room for the validation that follows a pass; a validation
        that would still overrun is skipped and counted in ``notes["valid_skipped"]``.
        """
        if self.cfg.unbounded(budget):
            raise ValueError("tol=0 with max_iterations=None and no budget would never stop; "
                             "set tol > 0, max_iterations, or a budget")
        with self._threads():
            return self._fit(train, vocab, budget, valid, callback)

    def _fit(self, train, vocab, budget, valid, callback) -> FitReport:
        cfg = self.cfg
        clock = Stopwatch()
        train = np.asarray(train, dtype=np.int64)
        dtype, arrays = cfg.dtype, self._arrays()
        rng = np.random.default_rng(cfg.seed)
        sizes = _stage_sizes(cfg.grow_from, cfg.states)
        params = initial_parameters(sizes[0], unigram(train, len(vocab)), rng, cfg.init_noise,
                                    emission_dtype=dtype)
        groups = None
        if cfg.emission_blocks > 1:
            if len(vocab) < cfg.emission_blocks:
                raise ValueError(f"emission_blocks={cfg.emission_blocks} exceeds the vocabulary "
                                 f"of {len(vocab)} words: every cluster needs a word")
            groups = word_groups(train, len(vocab), cfg.emission_blocks)
            params = (*params[:2], block_emissions(params[2], groups))
        self.vocab_ = vocab
        self.example_ = pick_example(train, vocab.boundary_id)
        tally = _Tally(clock, budget, len(train), callback)
        for k in sizes[:-1]:  # smaller models, each split in two for the next (grow_from)
            smaller = hmm_em.EM(cfg, train, vocab.boundary_id, params, dtype, arrays)
            self._passes(smaller, tally, cfg.stage_iterations, None, stage=k)
            params = split_states(smaller.parameters(), rng)
            tally.last *= 4.0  # an EM iteration costs ~K^2: predict the next stage's first
        if valid is not None:
            valid = self._checked_ids(valid)
            if budget.seconds is not None:  # the first pass must leave room for its validation
                self.set_parameters(vocab, *params[:2], _widened(params[2]))
                tally.timer.calibrate(self.token_logprobs, valid)
        if cfg.trainer == "em":
            run = hmm_em.EM(cfg, train, vocab.boundary_id, params, dtype, arrays, groups)
        else:
            kernels = _torch("trainer='adam'")
            arrays = kernels.TorchArrays(self.device)
            chunks = hmm_em.make_chunks(train, vocab.boundary_id, cfg.batch_tokens, arrays)
            run = kernels.Adam(cfg, chunks, params, dtype, arrays, rng)
        del params  # the trainer holds its own copy: the start need not stay alive in numpy
        notes = {"trainer": cfg.trainer, "chunks": len(run.chunks), "stages": sizes}
        best_nll, (pi, a, widen) = self._passes(run, tally, cfg.max_iterations, valid,
                                                stage=cfg.states)
        del run  # free the trainer's device buffers before the model takes its parameters
        self._adopt(vocab, pi, a, widen)
        notes.update(passes=tally.passes, stopped_by=tally.stopped_by)
        if valid is not None:
            notes["valid_nll"] = best_nll
            notes["valid_skipped"] = tally.valid_skipped
        return FitReport(tally.tokens, tally.steps, clock(), tally.history, notes,
                         valid_seconds=tally.timer.seconds)

    def _passes(self, run, tally: _Tally, max_passes: int | None, valid, *, stage: int):
        """Training passes of ``run`` until convergence, ``max_passes`` (``None``: no cap), the
        budget, or (with ``valid``) ``patience`` passes without a better validation likelihood.
        Returns (best validation nll or nan, the parameters to keep, best-validation or last, in
        the form of :meth:`~lmladder.baselines.hmm_em.EM.release`).

        Convergence: EM (monotone) stops when the objective gains less than ``tol`` nats per
        token in a pass; Adam when ``patience`` passes in a row fail to beat its best objective
        by ``tol`` per token.  Both objectives are bounded above, so both rules always end."""
        cfg, budget, clock, timer = self.cfg, tally.budget, tally.clock, tally.timer
        n_valid = 0 if valid is None else len(valid)

        def reserve() -> float:  # seconds to hold back for the validation after a pass
            return (timer.estimate(n_valid) or 0.0) if n_valid else 0.0

        def training_clock() -> float:  # Adam checks the budget against this between steps
            return clock() + reserve()

        best: tuple[float, tuple | None] = (math.inf, None)
        stale, passes = 0, 0
        monitor = ConvergenceMonitor(cfg.tol, tally.train_tokens, monotone=run.monotone,
                                     patience=cfg.patience)
        while max_passes is None or passes < max_passes:
            seconds = clock()
            if tally.passes and budget.exhausted(
                tokens=tally.tokens, steps=tally.steps, seconds=seconds + reserve()
            ):
                tally.stopped_by = "budget"
                break
            if (tally.passes and run.monotone and budget.seconds is not None
                    and seconds + tally.last + reserve() > budget.seconds):
                tally.stopped_by = "budget"
                break
            ll, objective, n_steps, n_tokens, complete = run.one_pass(
                budget, training_clock, tally.steps, tally.tokens
            )
            passes += 1
            tally.passes += 1
            tally.steps += n_steps
            tally.tokens += n_tokens
            tally.last = clock() - seconds
            record = {"states": stage, "pass": tally.passes, "steps": tally.steps,
                      "train_nll": -ll / max(n_tokens, 1), "seconds": clock()}
            if valid is not None:
                left = None if budget.seconds is None else budget.seconds - clock()
                if left is not None and reserve() > left:
                    tally.valid_skipped += 1  # it would overrun the budget: judge no further
                    record["valid_skipped"] = 1.0
                else:
                    params = run.parameters()
                    self.set_parameters(self.vocab_, *params)
                    record["valid_nll"] = -float(np.mean(timer.score(self.token_logprobs, valid)))
                    if record["valid_nll"] < best[0]:
                        best, stale = (record["valid_nll"], params), 0
                    else:
                        stale += 1
            tally.history.append(record)
            log.debug("HMM pass %d: %s", tally.passes, record)
            if tally.callback is not None:
                tally.callback(Progress(tally.steps, budget.steps or None, "steps",
                                        {"train_nll": record["train_nll"]}))
            if not complete:
                tally.stopped_by = "budget"
                break
            if stale >= cfg.patience:
                tally.stopped_by = "patience"
                break
            if monitor.report(objective):
                tally.stopped_by = "converged"
                break
        else:
            tally.stopped_by = "max_iterations"
        if best[1] is not None:
            pi, a, b = best[1]
            return best[0], (pi, a, lambda: b)
        return math.nan, run.release()

    def num_parameters(self) -> int:
        """Free parameters: with blocked emissions a state has (its cluster's size - 1) free
        emission probabilities, not V - 1."""
        m = self.cfg.emission_blocks
        if m == 1:
            return super().num_parameters()
        k, v = self._params()[2].shape
        emission = (k // m) * (v - m)  # sum over groups of S (cluster size - 1)
        return (k - 1) + k * (k - 1) + emission

    # -- scoring on the model's device ----------------------------------------------------------

    def _parameters_changed(self) -> None:
        self._cache = None

    def _device_params(self):
        """(pi, A, B, groups) in float64 on the model's device, in the kernel's layout (see
        :class:`~lmladder.baselines.hmm_em.Emissions`)."""
        if self._cache is None or self._cache[0] != self.device:
            pi, a, b = self._params()
            m = self.cfg.emission_blocks
            emissions = hmm_em.Emissions(groups_of(b, m) if m > 1 else None, len(pi),
                                         self._arrays())
            self._cache = (self.device, *emissions.chain(pi, a, "float64"),
                           emissions.compact(b, "float64"), emissions.groups)
        return self._cache[1:]

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | w_<i) (float64 ``(N,)``): all sentences filtered at once in float64 on
        the model's device.  Both context policies give the same scores (see hmm_core)."""
        with self._threads():
            return self._token_logprobs(tokens)

    def _token_logprobs(self, tokens: np.ndarray) -> np.ndarray:
        vocab = self._require_fitted()
        tokens = self._checked_ids(tokens)
        if len(tokens) == 0:
            return np.zeros(0)
        packed = pack_stream(tokens, vocab.boundary_id)
        pi, a, bt, groups = self._device_params()
        words = self._arrays().asarray(tokens[packed.source])
        return hmm_kernel.filter_logprobs(pi, a, bt, words, packed, groups)


def _widened(b: np.ndarray) -> np.ndarray:
    """B (K, V) of a float32 start in float64, rows renormalized in float64 (in float32 they sum
    to one only to ~1e-7)."""
    b = b.astype(np.float64)
    return np.divide(b, b.sum(axis=1, keepdims=True), out=b)


def word_groups(train: np.ndarray, vocab_size: int, blocks: int) -> np.ndarray:
    """The cluster of every word (int64 ``(V,)``) for blocked emissions: words sorted by their
    count in ``train`` (ties by id) and dealt round-robin into ``blocks`` clusters, so every
    cluster gets frequent and rare words and the clusters differ in size by one at most."""
    order = np.argsort(-np.bincount(train, minlength=vocab_size), kind="stable")
    groups = np.empty(vocab_size, dtype=np.int64)
    groups[order] = np.arange(vocab_size) % blocks
    return groups


def block_emissions(b: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """B (K, V) with every state restricted to its group's words (state k is in group
    k // (K / M)) and renormalized, in place."""
    blocks = int(groups.max()) + 1
    by_group = b.reshape(blocks, -1, b.shape[1])  # a view: (M, S, V)
    by_group *= (groups == np.arange(blocks)[:, None])[:, None, :]
    b /= b.sum(axis=1, keepdims=True)
    return b


def groups_of(b: np.ndarray, blocks: int) -> np.ndarray:
    """The word clusters a blocked B (K, V) was trained with: the group whose states give each
    word its mass (a word no state emits falls in group 0 and stays impossible)."""
    return np.argmax(b.reshape(blocks, -1, b.shape[1]).sum(axis=1) > 0, axis=0).astype(np.int64)


def _torch(why: str):
    """The torch half (:mod:`~lmladder.baselines.hmm_torch`), imported only when ``why`` (a CUDA
    device, the Adam trainer) needs it; a one-line ImportError if torch is missing."""
    try:
        from lmladder.baselines import hmm_torch
    except ImportError as err:
        raise ImportError(f"hmm: {why} needs torch, which cannot be imported: {err}") from err
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
    timer: ValidationTimer = field(default_factory=ValidationTimer)
    valid_skipped: int = 0
    stopped_by: str = ""


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


