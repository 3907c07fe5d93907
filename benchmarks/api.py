"""The one contract every lmladder model implements.

A model is trained on a stream of token ids and returns, for every token of another stream, the
natural-log probability ln p(w_i | w_<i) it assigns to it.  It never aggregates: perplexity, bits
per character and accuracies are computed by :mod:`lmladder.scoring` from those numbers.
This module and the four beside it that it re-exports -- :mod:`lmladder.vocab` (``Vocab``),
:mod:`lmladder.budget` (``Budget`` and the clocks a ``fit`` keeps), :mod:`lmladder.config` (typed
configs) and :mod:`lmladder.checkpoint` (the saved-model folder) -- are the contract layer: they
import nothing else of lmladder, and models depend on them, never the other way round.

Streams and boundaries
----------------------
A split is one flat ``int64`` array of token ids (see :mod:`lmladder.data`).  Word-level corpora
end every line with the boundary token ``<eos>``; character-level corpora use ``"\\n"``.  Before the
first token of any stream a model has seen exactly one boundary token, so the first word of a
split is predicted the way the first word of every later line is (this is how KenLM's ``<s>`` and
the PyTorch word-language-model example behave).

State API
---------
``state = model.init_state(batch)`` is the empty history.  ``logp, state = model.step(state, x)``
consumes one token per row (``x``: int64, shape ``(batch,)``) and returns ``logp``: float64,
shape ``(batch, vocab_size)``, the natural-log distribution over the *next* token.  The first
prediction of a stream is therefore ``model.step(model.init_state(1), [boundary])``.

Everything else -- batched scoring, ranks, generation -- has a reference implementation here built
on the state API; families override them with fast paths that the contract tests hold equal to
the reference.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmladder.budget import Budget, Stopwatch, ValidationTimer
from lmladder.checkpoint import (
    CHECKPOINT_KEYS,
    FORMAT_VERSION,
    CheckpointError,
    check_state_array,
    read_checkpoint,
    read_state_arrays,
    read_vocab,
    restore_state,
    write_checkpoint,
)
from lmladder.config import INT64_MAX, ConfigError, build_config, config_dict, require
from lmladder.vocab import Vocab

# The contract, then the names that lived here before the contract layer was split into modules
# (re-exported, so ``from lmladder.api import X`` keeps working for all of them).
__all__ = [
    "LanguageModel", "ContextPolicy", "Progress", "ProgressCallback", "FitReport",
    "NotFittedError", "NotApplicable",
    "Classifier", "FineTunable", "PseudoScorer", "supports_fine_tuning",
    "supports_pseudo_logprobs",
    "check_token_ids", "rank_counts", "sample_next", "log_softmax",
    "Vocab",
    "Budget", "Stopwatch", "ValidationTimer",
    "ConfigError", "INT64_MAX", "build_config", "require",
    "FORMAT_VERSION", "CHECKPOINT_KEYS", "CheckpointError", "read_checkpoint",
    "read_state_arrays", "check_state_array",
]


class NotFittedError(RuntimeError):
    """A model was used before ``fit`` or ``load``."""


class NotApplicable(Exception):  # noqa: N818 -- a verdict, not a failure
    """A capability this model lacks was asked for (a task that needs generation from an
    open-vocabulary model, fine-tuning of a quantized model, ...); recorded as "not applicable",
    never as an error."""


# --------------------------------------------------------------------------------------------
# What a fit reports


@dataclass(frozen=True)
class Progress:
    """One progress event from ``fit``: ``done`` of ``total`` units (``total`` may be unknown)."""

    done: float
    total: float | None
    unit: str
    metrics: Mapping[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


@dataclass
class FitReport:
    """What a ``fit`` did: the harness turns it into training throughput.

    ``seconds`` is the wall-clock time of the whole ``fit`` (what a time budget bounds), of which
    ``valid_seconds`` were spent scoring validation data; training throughput is
    ``train_tokens / (seconds - valid_seconds)`` tokens per second.
    """

    train_tokens: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    valid_seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Context policy


@dataclass(frozen=True)
class ContextPolicy:
    """How much history a model may use while a split is scored.

    Attributes
    ----------
    reset_at_boundary:
        ``False`` (default): history carries across lines, as in the RNN literature (Mikolov 2012,
        Zaremba et al. 2014).  ``True``: after every boundary token the model starts again from
        ``init_state`` and sees that single boundary token, so every line is scored on its own
        (KenLM's convention).
    window:
        The most tokens of history a model may condition on (``None``: as many as the model
        can use: its order for n-grams, everything for RNNs/HMMs, its context for Transformers).
    stride:
        For window-based models scoring long streams: how many new tokens each window scores.
        ``None`` means ``window // 2``.  Every token is still scored exactly once.

    Worked example (window 4, stride 2, tokens ``a b c d e f`` after the boundary ``|``): the
    first pass reads ``| a b c`` and scores ``a b c d`` with 1 to 4 tokens of history; the next
    reads ``b c d e`` and scores only the ``stride`` newest targets, ``e`` (history ``b c d``) and
    ``f`` (history ``b c d e``).  Every token is scored once, with between ``window - stride + 1``
    and ``window`` tokens of history once the stream is that long.
    """

    reset_at_boundary: bool = False
    window: int | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise ConfigError(f"context window must be >= 1, got {self.window}")
        if self.stride is not None and not (1 <= self.stride <= (self.window or self.stride)):
            raise ConfigError(f"stride must be in [1, window], got {self.stride}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# The contract


class LanguageModel(ABC):
    """Base class of every lmladder model.

    Subclasses define a frozen dataclass ``Config`` (the hyperparameters, keyword-only, stored
    verbatim) and implement ``fit``, ``init_state``, ``step``, ``num_parameters`` and
    ``_state_arrays``/``_load_state_arrays``.  Learned state (names ending in ``_``) is created in
    ``fit`` or ``load``.  Models do no printing and no file I/O outside ``save``/``load``; progress
    goes through the ``callback`` given to ``fit``.

    Class attributes
    ----------------
    Config:
        The hyperparameter dataclass.
    devices:
        Device kinds the model can run on (``"cpu"``, ``"cuda"``, ``"mps"``).
    revision:
        Bump when a change alters what the model computes; results keyed on an older revision are
        re-run.
    family:
        The rung of the ladder the model belongs to ("n-gram", "HMM", "RNN", "Transformer"):
        reports colour and group rows by it.
    closed_vocabulary:
        ``True`` when ``step`` returns a full distribution over the dataset vocabulary.  Open-
        vocabulary models (a pretrained model with its own tokenizer) score the dataset's tokens
        but cannot enumerate alternatives; the distribution tests and ranks skip them.
    """

    Config: ClassVar[type]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    revision: ClassVar[int] = 1
    family: ClassVar[str] = "other"
    closed_vocabulary: ClassVar[bool] = True

    def __init__(self, **config: Any) -> None:
        self.cfg = build_config(self.Config, config, where=type(self).__name__)
        self.device = "cpu"
        self.vocab_: Vocab | None = None

    # -- required ---------------------------------------------------------------------------

    @abstractmethod
    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Learn from the token stream ``train`` (int64 ids of ``vocab``); return a FitReport."""

    @abstractmethod
    def init_state(self, batch: int) -> Any:
        """The empty history for ``batch`` independent streams."""

    @abstractmethod
    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        """Consume ``tokens`` (int64, ``(batch,)``); return (float64 ``(batch, V)`` ln-probs of
        the next token, new state).  Must not modify ``state`` in place."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Number of learned scalars (n-gram: stored probabilities and backoff weights)."""

    @abstractmethod
    def _state_arrays(self) -> dict[str, np.ndarray]:
        """Learned state as named numpy arrays (what ``save`` writes)."""

    @abstractmethod
    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore learned state from ``_state_arrays`` output; ``self.vocab_`` is already set."""

    # -- optional fast paths (the defaults are the reference implementations) ------------------

    @classmethod
    def devices_for(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The device kinds a model built with ``config`` runs on: :attr:`devices`, unless the
        config decides it (``saved:<folder>`` runs where the saved model runs)."""
        return cls.devices

    def to(self, device: str) -> LanguageModel:
        """Move the model to ``device``; CPU-only models accept only ``"cpu"``."""
        kind = device.split(":")[0]
        if kind not in self.devices:
            raise ValueError(f"{type(self).__name__} runs on {self.devices}, not {device!r}")
        self.device = device
        return self

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """ln p(w_i | history) for every token of ``tokens`` (int64, ``(N,)``) -> float64 ``(N,)``.

        The history of ``tokens[0]`` is one boundary token.  This reference implementation loops
        ``step`` one token at a time; ``context.window`` is honoured by the model's own state
        (fast paths must agree with this loop).  Ids outside the vocabulary raise ValueError
        (see :meth:`_checked_ids`).
        """
        tokens = self._checked_ids(tokens)
        out = np.empty(len(tokens), dtype=np.float64)
        for i, logp in enumerate(self._reference_distributions(tokens, context)):
            out[i] = logp[tokens[i]]
        return out

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """Where each token stands in the model's next-token distribution, ties kept apart.

        Returns int64 ``(N, 2)``: column 0 (``g``) counts the vocabulary entries the model rates
        strictly more likely than the token, column 1 (``e >= 1``) the entries exactly as likely,
        the token itself included.  ``(0, 1)`` is an unshared top-1 prediction; a uniform model
        gives ``(0, V)`` for every token.  :func:`lmladder.scoring.accuracy_from_ranks` turns
        these into expected top-k accuracy under random tie-breaking.  Reference: loops ``step``
        and compares with :func:`rank_counts`, which fast paths should use too.
        """
        tokens = self._checked_ids(tokens)
        out = np.empty((len(tokens), 2), dtype=np.int64)
        for i, logp in enumerate(self._reference_distributions(tokens, context)):
            out[i] = rank_counts(logp[None, :], tokens[i : i + 1])[0]
        return out

    def _checked_ids(self, tokens: np.ndarray | Sequence[int]) -> np.ndarray:
        """``tokens`` as int64 ``(N,)`` after checking the model is fitted and every id is one of
        its vocabulary; every scoring path (reference and fast) starts here."""
        vocab = self._require_fitted()
        return check_token_ids(tokens, len(vocab))

    def _reference_distributions(self, tokens: np.ndarray, context: ContextPolicy):
        """Yield the float64 ``(V,)`` next-token ln-distribution before each of ``tokens``,
        one ``step`` at a time, resetting at boundaries when the policy says so."""
        vocab = self._require_fitted()
        state = self.init_state(1)
        prev = vocab.boundary_id
        for w in tokens:
            if context.reset_at_boundary and prev == vocab.boundary_id:
                state = self.init_state(1)
            logp, state = self.step(state, np.array([prev], dtype=np.int64))
            yield logp[0]
            prev = int(w)

    def generate(
        self,
        prompt: Sequence[int] | np.ndarray,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """Sample ``max_new_tokens`` ids after ``prompt`` (which follows one boundary token).

        The same seed gives the same tokens.  ``temperature`` > 0 divides the log-probabilities;
        ``top_k`` keeps only the k most likely tokens.  Returns int64 ``(max_new_tokens,)``.
        """
        vocab = self._require_fitted()
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        rng = np.random.default_rng(seed)
        state = self.init_state(1)
        logp, state = self.step(state, np.array([vocab.boundary_id], dtype=np.int64))
        for t in np.asarray(prompt, dtype=np.int64):
            logp, state = self.step(state, np.array([t], dtype=np.int64))
        out = np.empty(max_new_tokens, dtype=np.int64)
        for i in range(max_new_tokens):
            nxt = sample_next(logp[0], rng, temperature=temperature, top_k=top_k)
            out[i] = nxt
            logp, state = self.step(state, np.array([nxt], dtype=np.int64))
        return out

    def inspect(self) -> list[dict]:
        """Optional tables for the report, each ``{"title", "columns", "rows"}``."""
        return []

    # -- provided -----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The hyperparameters, verbatim (tuples as lists)."""
        return config_dict(self.cfg)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (class, config, vocabulary, hash) and ``state.npz`` (arrays);
        see :mod:`lmladder.checkpoint` for the folder."""
        vocab = self._require_fitted()
        meta = {
            "format_version": FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "revision": self.revision,
            "config": self.config(),
            "vocab": vocab.to_dict(),
            "vocab_sha256": vocab.sha256,
        }
        return write_checkpoint(directory, meta, self._state_arrays())

    @classmethod
    def load(cls, directory: str | Path) -> LanguageModel:
        """Read what ``save`` wrote into this class.  To load a checkpoint of any registered
        model, use :func:`lmladder.load_model`, which checks the saved class first.

        A damaged checkpoint raises :class:`CheckpointError` naming the file and the problem:
        unreadable or incomplete ``model.json``, a config the model refuses, a ``state.npz``
        that is not an archive, missing arrays, or arrays that do not fit the vocabulary/config.
        """
        directory = Path(directory)
        meta = read_checkpoint(directory)
        if meta["class"] != f"{cls.__module__}:{cls.__qualname__}":
            raise TypeError(
                f"{directory} holds a {meta['class']}, not a {cls.__qualname__}; "
                "lmladder.load_model(path) loads a checkpoint of any registered model"
            )
        meta_path = directory / "model.json"
        vocab = read_vocab(meta, meta_path)
        if not isinstance(meta["config"], dict):
            raise CheckpointError(f"{meta_path}: 'config' must be an object, "
                                  f"got {type(meta['config']).__name__}")
        try:
            model = cls(**meta["config"])
        except ConfigError as err:
            raise CheckpointError(f"{meta_path}: the saved config is refused: {err}") from err
        model.vocab_ = vocab
        restore_state(directory / "state.npz", model._load_state_arrays)
        return model

    def _require_fitted(self) -> Vocab:
        if self.vocab_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load()")
        return self.vocab_

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------------------------
# Optional capabilities
#
# A family may offer more than the contract above.  A capability is a method the base class does
# NOT define; a task or the harness detects it with the ``supports_*`` functions below and reports
# a model without it as "not applicable" (never an error).  The contract tests do not require
# them; families that offer them test them in their own files.


@typing.runtime_checkable
class Classifier(typing.Protocol):
    """What ``fine_tune_classifier`` returns: a fine-tuned text classifier.

    ``predict_logits(texts)`` takes texts as ``fine_tune_classifier`` does and returns float64
    ``(len(texts), num_classes)`` unnormalised class scores (argmax = predicted class).
    """

    def predict_logits(self, texts: Sequence[np.ndarray]) -> np.ndarray: ...


@typing.runtime_checkable
class FineTunable(typing.Protocol):
    """Capability: fine-tune the model's network, with a classification head, on labelled texts.

    ``fine_tune_classifier(texts, labels, num_classes, *, budget, vocab=None, valid=None,
    seed=0) -> Classifier``

    ``texts``: one int64 ``(n_i,)`` array of ids per text, *without* boundary tokens (the model
    puts one boundary token before each text, the history every first token has in scoring);
    ``labels``: int64 ``(n,)`` in ``[0, num_classes)``.  ``budget`` bounds the fine-tuning
    (``tokens`` counts the text tokens read, ``steps`` optimizer steps, ``seconds`` wall time).
    ``valid``: optional ``(texts, labels)`` a family may use to pick its best weights.  The same
    seed and a tokens/steps budget give the same classifier.

    A *fitted* model fine-tunes a copy of its pre-trained network and is left unchanged (its
    ``token_logprobs`` stay the same).  An *unfitted* model must be given ``vocab`` and fine-tunes
    a freshly initialised network for it (no language-model pre-training: the baseline that shows
    the gain from pre-training); it stays unfitted.
    """

    def fine_tune_classifier(
        self,
        texts: Sequence[np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        *,
        budget: Budget,
        vocab: Vocab | None = None,
        valid: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
        seed: int = 0,
    ) -> Classifier: ...


@typing.runtime_checkable
class PseudoScorer(typing.Protocol):
    """Capability of masked language models: pseudo-log-likelihood scores (Salazar et al. 2020,
    "Masked Language Model Scoring").

    ``pseudo_logprobs(tokens, *, context) -> float64 (N,)``: for every token (int64 ``(N,)``, the
    stream read after one boundary token, as in ``token_logprobs``), ln p(w_i | every other token
    of its window), the token itself masked; ``context.window`` bounds the window and
    ``context.reset_at_boundary`` keeps it inside the line.  These see *future* tokens, so their
    sum is not a likelihood of the stream and :func:`lmladder.scoring.pseudo_perplexity` is never
    comparable with causal perplexity.
    """

    def pseudo_logprobs(self, tokens: np.ndarray, *,
                        context: ContextPolicy = ContextPolicy()) -> np.ndarray: ...


def supports_fine_tuning(model: LanguageModel | type) -> bool:
    """Whether ``model`` (an instance or class) offers :class:`FineTunable`'s hook."""
    return callable(getattr(model, "fine_tune_classifier", None))


def supports_pseudo_logprobs(model: LanguageModel | type) -> bool:
    """Whether ``model`` (an instance or class) offers :class:`PseudoScorer`'s method."""
    return callable(getattr(model, "pseudo_logprobs", None))


# --------------------------------------------------------------------------------------------
# Token helpers the reference implementations use (and fast paths should use too)


def check_token_ids(tokens: np.ndarray | Sequence[int], vocab_size: int) -> np.ndarray:
    """``tokens`` as int64 ``(N,)``, or ValueError if an id is not in ``[0, vocab_size)``."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"token ids must be a 1-D array, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"token id {bad} is outside this model's vocabulary of {vocab_size} "
                "(was it fitted on another dataset?)"
            )
    return arr


def rank_counts(logp: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(g, e)`` of each target in its row of ``logp`` (``(M, V)`` scores, ``targets`` ``(M,)``):
    int64 ``(M, 2)``, g = entries strictly above the target's score, e = entries equal to it
    (the target included).  See :meth:`LanguageModel.next_token_ranks`."""
    logp = np.asarray(logp)
    chosen = logp[np.arange(len(targets)), targets][:, None]
    out = np.empty((len(targets), 2), dtype=np.int64)
    out[:, 0] = np.count_nonzero(logp > chosen, axis=1)
    out[:, 1] = np.count_nonzero(logp == chosen, axis=1)
    return out


def sample_next(
    logp: np.ndarray,
    rng: np.random.Generator,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
) -> int:
    """Draw one id from the ln-probabilities ``logp`` (``(V,)``) with temperature and top-k."""
    scores = np.asarray(logp, dtype=np.float64) / temperature
    if top_k is not None and top_k < len(scores):
        cut = np.partition(scores, -top_k)[-top_k]
        scores = np.where(scores >= cut, scores, -np.inf)
    scores = scores - scores.max()
    p = np.exp(scores)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable ln-softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
