"""The one contract every lmladder model implements.

A model is trained on a stream of token ids and returns, for every token of another stream, the
natural-log probability ln p(w_i | w_<i) it assigns to it.  It never aggregates: perplexity, bits
per character and accuracies are computed by :mod:`lmladder.scoring` from those numbers.
This module imports nothing else of lmladder: models depend on it, never the other way round.

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
import hashlib
import json
import math
import time
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

FORMAT_VERSION = 1


class ConfigError(ValueError):
    """A configuration names an unknown key or gives a value of the wrong type."""


class NotFittedError(RuntimeError):
    """A model was used before ``fit`` or ``load``."""


# --------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """A frozen token <-> id mapping.

    Parameters
    ----------
    tokens:
        Every token, id = position.  Must be unique.
    boundary:
        The token that ends a line (``"<eos>"`` for words, ``"\\n"`` for characters).  It is also
        the context a model has seen before the first token of a stream.
    unk:
        The token out-of-vocabulary input is mapped to, or ``None`` when the vocabulary is closed.
    separator:
        What stands between two tokens of one line in running text: ``" "`` for words, ``""`` for
        characters.  ``detokenize`` uses it to give text-level models (and bits per character)
        the text back.
    """

    def __init__(
        self, tokens: Sequence[str], *, boundary: str, unk: str | None = None, separator: str = " "
    ):
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        if boundary not in self.index:
            raise ValueError(f"boundary token {boundary!r} is not in the vocabulary")
        if unk is not None and unk not in self.index:
            raise ValueError(f"unknown-word token {unk!r} is not in the vocabulary")
        self.boundary = boundary
        self.unk = unk
        self.separator = separator
        self.boundary_id = self.index[boundary]
        self.unk_id = None if unk is None else self.index[unk]

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.sha256)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token strings to an int64 array; unknown tokens map to ``unk`` (KeyError if closed)."""
        if self.unk_id is None:
            return np.fromiter((self.index[t] for t in tokens), dtype=np.int64, count=len(tokens))
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def detokenize(self, ids: Sequence[int] | np.ndarray) -> str:
        """Running text for ``ids``: tokens joined by ``separator``, each boundary a newline."""
        out, line = [], []
        for i in ids:
            if int(i) == self.boundary_id:
                out.append(self.separator.join(line) + "\n")
                line = []
            else:
                line.append(self.tokens[int(i)])
        out.append(self.separator.join(line))
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "boundary": self.boundary,
            "unk": self.unk,
            "separator": self.separator,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        return cls(d["tokens"], boundary=d["boundary"], unk=d["unk"], separator=d["separator"])

    @property
    def sha256(self) -> str:
        """A fingerprint of the vocabulary; checkpoints refuse to load onto another one."""
        blob = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Training budget, progress and report


@dataclass(frozen=True)
class Budget:
    """Bounds one ``fit``: stop at whichever limit is reached first (``None`` = no limit).

    ``tokens`` counts training tokens processed (repeated epochs count again), ``steps`` counts
    optimizer steps or EM iterations, ``seconds`` is wall-clock time.
    """

    tokens: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def exhausted(self, *, tokens: int = 0, steps: int = 0, seconds: float = 0.0) -> bool:
        return (
            (self.tokens is not None and tokens >= self.tokens)
            or (self.steps is not None and steps >= self.steps)
            or (self.seconds is not None and seconds >= self.seconds)
        )

    def fraction(self, *, tokens: int = 0, steps: int = 0, seconds: float = 0.0) -> float | None:
        """How much of the budget is used, in [0, 1], or ``None`` if unbounded."""
        parts = [
            used / limit
            for used, limit in ((tokens, self.tokens), (steps, self.steps), (seconds, self.seconds))
            if limit
        ]
        return min(1.0, max(parts)) if parts else None


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
    """What a ``fit`` did: the harness turns it into training throughput."""

    train_tokens: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


class Stopwatch:
    """Wall-clock seconds since construction (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


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
# Typed configuration


def _check_type(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_check_type(v, args[0]) for v in value)
        return all(_check_type(v, a) for v, a in zip(value, args, strict=False))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def build_config(config_cls: type, values: Mapping[str, Any], *, where: str = "config"):
    """Instantiate the frozen dataclass ``config_cls`` from ``values``, checking keys and types.

    Errors name ``where`` (e.g. ``"quick.toml: models[2].config"``), the key, and the valid keys.
    Lists are converted to tuples so configs stay hashable.
    """
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
            f"for {config_cls.__qualname__}; "
            f"valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(config_cls)
    clean = {}
    for key, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        if not _check_type(value, hints[key]):
            raise ConfigError(
                f"{where}: key {key!r} must be {_type_name(hints[key])}, got {value!r}"
            )
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        clean[key] = value
    try:
        return config_cls(**clean)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


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
    closed_vocabulary:
        ``True`` when ``step`` returns a full distribution over the dataset vocabulary.  Open-
        vocabulary models (a pretrained model with its own tokenizer) score the dataset's tokens
        but cannot enumerate alternatives; the distribution tests and ranks skip them.
    """

    Config: ClassVar[type]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    revision: ClassVar[int] = 1
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
        (fast paths must agree with this loop).
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        out = np.empty(len(tokens), dtype=np.float64)
        for i, logp in enumerate(self._reference_distributions(tokens, context)):
            out[i] = logp[tokens[i]]
        return out

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        """For each token, how many vocabulary entries the model rates strictly more likely.

        Rank 0 means a correct top-1 prediction.  int64 ``(N,)``.  Reference: loops ``step``.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        out = np.empty(len(tokens), dtype=np.int64)
        for i, logp in enumerate(self._reference_distributions(tokens, context)):
            out[i] = int(np.count_nonzero(logp > logp[tokens[i]]))
        return out

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
        return _jsonable(dataclasses.asdict(self.cfg))

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (class, config, vocabulary, hash) and ``state.npz`` (arrays)."""
        vocab = self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "revision": self.revision,
            "config": self.config(),
            "vocab": vocab.to_dict(),
            "vocab_sha256": vocab.sha256,
        }
        arrays = self._state_arrays()
        np.savez(directory / "state.npz", **arrays)
        (directory / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LanguageModel:
        """Read what ``save`` wrote into this class.  To load a checkpoint of any registered
        model, use :func:`lmladder.load_model`, which checks the saved class first."""
        directory = Path(directory)
        meta = read_checkpoint(directory)
        if meta["class"] != f"{cls.__module__}:{cls.__qualname__}":
            raise TypeError(
                f"{directory} holds a {meta['class']}, not a {cls.__qualname__}; "
                "lmladder.load_model(path) loads a checkpoint of any registered model"
            )
        vocab = Vocab.from_dict(meta["vocab"])
        if vocab.sha256 != meta["vocab_sha256"]:
            raise ValueError(f"{directory}: vocabulary does not match its recorded hash")
        model = cls(**meta["config"])
        model.vocab_ = vocab
        with np.load(directory / "state.npz", allow_pickle=False) as npz:
            model._load_state_arrays({k: npz[k] for k in npz.files})
        return model

    def _require_fitted(self) -> Vocab:
        if self.vocab_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load()")
        return self.vocab_

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def read_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a checkpoint folder, its format version checked."""
    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: unsupported checkpoint format {meta.get('format_version')}")
    return meta


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
