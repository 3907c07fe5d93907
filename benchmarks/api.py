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
import os
import time
import types
import typing
import zipfile
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


class CheckpointError(ValueError):
    """A checkpoint folder cannot be loaded; the message names the file and what is wrong."""


class NotApplicable(Exception):  # noqa: N818 -- a verdict, not a failure
    """A capability this model lacks was asked for (a task that needs generation from an
    open-vocabulary model, fine-tuning of a quantized model, ...); recorded as "not applicable",
    never as an error."""


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
    optimizer steps or EM iterations, ``seconds`` is wall-clock time of the *whole* ``fit``,
    validation inside it included (a family stops training early enough for its final
    evaluation to fit, and cuts or skips that evaluation rather than overrun).  Every limit must
    be > 0 (and finite): anything else is a :class:`ConfigError` naming the key and value.
    """

    tokens: int | None = None
    steps: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for key in ("tokens", "steps"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"budget.{key} must be a whole number, got {value!r}")
            if value <= 0:
                raise ConfigError(f"budget.{key} must be > 0, got {value!r}")
        s = self.seconds
        if s is not None:
            if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)):
                raise ConfigError(f"budget.seconds must be a number, got {s!r}")
            if not math.isfinite(s) or s <= 0:
                raise ConfigError(f"budget.seconds must be > 0, got {s!r}")

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


class Stopwatch:
    """Wall-clock seconds since construction (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


class ValidationTimer:
    """Times the validation scoring a ``fit`` does, so a time budget can cover it.

    ``seconds`` is the total spent (what ``FitReport.valid_seconds`` reports); ``estimate(n)``
    predicts the cost of scoring ``n`` tokens from the latest measurement (``None`` before any),
    which lets a training loop stop while there is still room for its final evaluation.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.per_token: float | None = None

    def score(self, score: Callable[[np.ndarray], Any], ids: np.ndarray) -> Any:
        """``score(ids)``, timed."""
        start = time.perf_counter()
        out = score(ids)
        spent = time.perf_counter() - start
        self.seconds += spent
        self.per_token = spent / max(1, len(ids))
        return out

    def calibrate(self, score: Callable[[np.ndarray], Any], ids: np.ndarray,
                  sample: int = 2048) -> None:
        """Measure the per-token cost on the first ``sample`` ids if nothing is measured yet
        (an over-estimate for long streams, which errs on the side of the budget)."""
        if self.per_token is None and len(ids):
            self.score(score, ids[:sample])

    def estimate(self, n: int) -> float | None:
        return None if self.per_token is None else self.per_token * n

    def affordable(self, n: int, seconds_left: float | None) -> int:
        """How many of ``n`` tokens can be scored in ``seconds_left`` (``None``: all)."""
        if seconds_left is None or self.per_token is None or self.per_token == 0:
            return n
        return max(0, min(n, int(seconds_left / self.per_token)))


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


INT64_MAX = 2**63 - 1


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
        if not args:
            return True
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return all(_check_type(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _check_type(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _number_problem(value: Any) -> str | None:
    """Why ``value`` (or a number inside it) cannot be a config number, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and abs(value) > INT64_MAX:
        return f"must fit in 64 bits (|value| <= 2**63 - 1), got {value}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if isinstance(value, (list, tuple)):
        for v in value:
            problem = _number_problem(v)
            if problem:
                return problem
    return None


def require(config: Any, key: str, ok: bool, need: str) -> None:
    """For configs' ``__post_init__``: ValueError ``"<key> must be <need>, got <value>"`` unless
    ``ok`` (``build_config`` adds where the config came from)."""
    if not ok:
        raise ValueError(f"{key} must be {need}, got {getattr(config, key)!r}")


def _fixed_arity(hint: Any) -> int | None:
    """The number of values a fixed-length tuple type (or an optional one) holds, else None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        sizes = {_fixed_arity(h) for h in typing.get_args(hint)} - {None}
        return sizes.pop() if len(sizes) == 1 else None
    args = typing.get_args(hint)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        return len(args)
    return None


def build_config(config_cls: type, values: Mapping[str, Any], *, where: str = "config"):
    """Instantiate the frozen dataclass ``config_cls`` from ``values``, checking keys and types.

    Errors (:class:`ConfigError`, one line) name ``where`` (e.g. ``"quick.toml: models[2].config"``)
    and the key: unknown keys (listing the valid ones), values of the wrong type, tuples of the
    wrong length (``betas = [0.9]`` for ``tuple[float, float]``), integers beyond 64 bits,
    non-finite floats, and any range the config's own ``__post_init__`` refuses.
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
    for key, raw in values.items():
        value = tuple(raw) if isinstance(raw, list) else raw
        problem = _number_problem(value)
        if problem:
            raise ConfigError(f"{where}: key {key!r} {problem}")
        if not _check_type(value, hints[key]):
            arity = _fixed_arity(hints[key])
            size = f" ({arity} values)" if arity is not None else ""
            raise ConfigError(
                f"{where}: key {key!r} must be {_type_name(hints[key])}{size}, got {raw!r}"
            )
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        clean[key] = value
    missing = [
        name for name, f in fields.items()
        if name not in clean and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(map(repr, missing))}")
    try:
        return config_cls(**clean)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as err:
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
        # each file appears whole or not at all (written aside, then renamed); model.json last,
        # so a folder with a model.json has the state it describes
        with open(directory / ".state.npz.tmp", "wb") as f:
            np.savez(f, **arrays)
        os.replace(directory / ".state.npz.tmp", directory / "state.npz")
        (directory / ".model.json.tmp").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        os.replace(directory / ".model.json.tmp", directory / "model.json")
        return directory

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
        try:
            vocab = Vocab.from_dict(meta["vocab"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{meta_path}: the vocabulary is damaged ({_reason(err)})"
            ) from err
        if vocab.sha256 != meta["vocab_sha256"]:
            raise CheckpointError(f"{meta_path}: vocabulary does not match its recorded hash")
        if not isinstance(meta["config"], dict):
            raise CheckpointError(f"{meta_path}: 'config' must be an object, "
                                  f"got {type(meta['config']).__name__}")
        try:
            model = cls(**meta["config"])
        except ConfigError as err:
            raise CheckpointError(f"{meta_path}: the saved config is refused: {err}") from err
        model.vocab_ = vocab
        arrays = read_state_arrays(directory / "state.npz")
        try:
            model._load_state_arrays(arrays)
        except CheckpointError:
            raise
        except KeyError as err:
            raise CheckpointError(
                f"{directory / 'state.npz'}: missing array {err.args[0]!r} "
                f"(it holds {', '.join(sorted(arrays)) or 'no arrays'})"
            ) from err
        except (ValueError, TypeError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{directory / 'state.npz'}: {_reason(err)}") from err
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


CHECKPOINT_KEYS = ("format_version", "class", "config", "vocab", "vocab_sha256")


def read_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a checkpoint folder: a JSON object with every key ``save`` writes
    and a supported format version, else :class:`CheckpointError` naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise CheckpointError(f"{directory}: checkpoint folder {what}")
    path = directory / "model.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing; is {directory} a checkpoint folder "
                              "written by save()?") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read ({_reason(err)})") from err
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON, truncated or damaged ({err})") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    missing = [k for k in CHECKPOINT_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format {meta['format_version']!r} "
            f"(this lmladder reads format {FORMAT_VERSION})"
        )
    if not isinstance(meta["class"], str):
        raise CheckpointError(f"{path}: 'class' must be a string, got {meta['class']!r}")
    return meta


def read_state_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's ``state.npz`` (no pickles), or :class:`CheckpointError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: not an .npz archive of named arrays")
            return {k: npz[k] for k in npz.files}
    except CheckpointError:
        raise
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable .npz archive ({_reason(err)})") from err


def check_state_array(
    arrays: Mapping[str, np.ndarray],
    name: str,
    shape: tuple[int | None, ...],
    kind: str = "f",
) -> np.ndarray:
    """``arrays[name]`` after checking its shape (``None`` = any size) and dtype kind
    (``"f"`` float, ``"i"`` integer, ``"u"`` unsigned); ValueError naming the array otherwise.
    Families call it from ``_load_state_arrays`` so a checkpoint that does not fit the
    vocabulary or config is refused at load time, not as an IndexError while scoring."""
    if name not in arrays:
        raise KeyError(name)
    a = np.asarray(arrays[name])
    ok_shape = a.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(a.shape, shape, strict=True)
    )
    if not ok_shape:
        want = "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"array {name!r} has shape {a.shape}, expected {want}")
    kinds = {"f": "f", "i": "iu", "u": "u"}[kind]
    if a.dtype.kind not in kinds and not (a.size == 0 and a.dtype.kind in "fiu"):
        raise ValueError(f"array {name!r} has dtype {a.dtype}, expected "
                         f"{ {'f': 'floating point', 'i': 'integer', 'u': 'unsigned'}[kind]}")
    return a


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


def _reason(err: BaseException) -> str:
    """An exception as one short line (KeyError's repr-quoting removed)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


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
