"""Task scores: what a language model's probabilities buy, measured through the contract only.

A task is a class with a name, a one-line description and the metrics it reports, each with its
direction and chance level (so a report never guesses which way is better).  Built-in tasks are
listed in :data:`TASKS`; installed distributions add their own through the entry-point group
``lmladder.tasks`` (checked and, if broken, reported once and skipped, as models are).  A task
reaches a model only through :class:`~lmladder.api.LanguageModel` (``token_logprobs``,
``generate``, ``fit``), so every registered model can run every task; fine-tuning tasks also use
the optional :class:`~lmladder.api.FineTunable` capability and report models without it as
"not applicable" (:class:`~lmladder.api.NotApplicable`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lmladder.api import Budget, ConfigError, LanguageModel, NotApplicable
from lmladder.corpus import Dataset
from lmladder.record import MetricSpec
from lmladder.registry import class_path, import_target, load_entry_points, unknown
from lmladder.significance import (  # noqa: F401 -- tasks import them from here
    RESAMPLES,
    bootstrap_counts,
    paired_block,
    paired_entry,
    percentile_interval,
)

PLUGIN_GROUP = "lmladder.tasks"


@dataclass(frozen=True)
class Subject:
    """What a task may use of a matrix cell.

    ``model`` is the cell's model fitted on ``data``; tasks that need models trained on other
    text (one per class, a translation model) build them with ``fresh()`` -- a new, unfitted
    model of the cell's entry and config -- and train them under ``budget``.
    """

    model: LanguageModel
    data: Dataset | None  # None for a task that brings its own data (Task.own_data)
    budget: Budget = field(default_factory=Budget)
    data_dir: str | None = None
    fresh: Callable[[], LanguageModel] | None = None

    def new_model(self) -> LanguageModel:
        if self.fresh is not None:
            return self.fresh()
        return type(self.model)(**self.model.config())


class Task(ABC):
    """One task: builds its items with a recorded seed, then scores a subject's model(s)."""

    name: ClassVar[str]
    description: ClassVar[str]
    metrics: ClassVar[tuple[MetricSpec, ...]]
    uses_fitted_model: ClassVar[bool] = True  # False: the task trains its own models (fresh())
    # the data the task brings itself ("multi30k", an NLTK collection), or None: the task reads
    # the dataset the subject's model is fitted on
    own_data: ClassVar[str | None] = None

    @abstractmethod
    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        """Score ``subject`` on the task's items drawn with ``seed``.

        Returns ``{metric name: value, ...}`` plus whatever identifies the items (counts, seed).
        The same data and seed give the same items on every machine.
        """


def wilson_interval(hits: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``hits / n`` (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def items_fingerprint(items: Any) -> str:
    """SHA-256 of a JSON rendering of what identifies a task's items (ids, positions,
    references): two results pair item by item only when their fingerprints agree."""
    blob = json.dumps(items, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(blob.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def bootstrap_note(seed: int, over: str, resamples: int = RESAMPLES) -> dict[str, Any]:
    """What a result records about its ``*_ci95`` bootstrap intervals."""
    return {"resamples": resamples, "seed": seed, "over": over,
            "interval": "95% percentile, paired (the same resamples for every system)"}


TASKS: dict[str, str] = {  # built-in task name -> "module:Class"
    "cloze": "lmladder.tasks.cloze:Cloze",
    "minimal-pairs": "lmladder.tasks.minimal_pairs:MinimalPairs",
    "rt-polarity": "lmladder.tasks.sentiment:RtPolarity",
    "movie-reviews": "lmladder.tasks.sentiment:MovieReviews",
    "rt-polarity-finetune": "lmladder.tasks.finetune:RtPolarityFineTune",
    "movie-reviews-finetune": "lmladder.tasks.finetune:MovieReviewsFineTune",
    "continuation": "lmladder.tasks.continuation:Continuation",
    "translation": "lmladder.tasks.translation:Translation",
}


@functools.cache
def _plugins() -> dict[str, str]:
    return {p.name: class_path(p.obj) for p in load_entry_points(PLUGIN_GROUP, TASKS, _not_a_task)}


def _not_a_task(obj: Any) -> str | None:
    if isinstance(obj, type) and issubclass(obj, Task) and not obj.__abstractmethods__:
        return None
    return f"{obj!r} is not a concrete subclass of lmladder.tasks.Task"


def tasks() -> dict[str, str]:
    """Every task by name: the built-in ones, then installed plugins."""
    return {**TASKS, **_plugins()}


def task_class(name: str) -> type[Task]:
    known = tasks()
    if name not in known:
        raise unknown("task", name, known)
    return import_target(known[name])


def options_of(klass: type[Task]) -> list[inspect.Parameter]:
    """The keyword options a task class takes (its constructor's keyword-only parameters)."""
    return [p for p in inspect.signature(klass.__init__).parameters.values()
            if p.kind is p.KEYWORD_ONLY]


def task_options(name: str, options: dict[str, Any] | None) -> Task:
    """Task ``name`` built with keyword ``options`` (``{"items": 500}``); an option the task
    does not take, or a value it refuses, is a :class:`~lmladder.api.ConfigError` naming the
    task and its options."""
    klass = task_class(name)
    options = dict(options or {})
    accepted = options_of(klass)
    unknown_keys = sorted(set(options) - {p.name for p in accepted})
    if unknown_keys:
        listed = ", ".join(f"{p.name} (default {p.default!r})" for p in accepted) or "none"
        raise ConfigError(f"task {name!r} has no option {unknown_keys[0]!r}; its options: "
                          f"{listed}")
    try:
        return klass(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"task {name!r}: {err}") from None


def run_task(task: str, model: str, *, dataset: str | None = None, data_dir=None,
             budget: Budget | None = None, seed: int = 0,
             overrides: dict[str, Any] | None = None,
             options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run task ``task`` (built with ``options``) for registry model ``model`` (config
    ``overrides``).

    A task that scores the fitted model reads ``dataset`` (default "ptb"), fits the model on its
    training split under ``budget`` and scores it; a task that brings its own data
    (:attr:`Task.own_data`: sentiment collections, Multi30k) reads only that, trains its own
    models from the same entry and config, and refuses a ``dataset``.  Returns the task's scores
    with ``task``, ``model``, ``dataset``, ``seed``, the options and overrides given, and
    ``status`` ("ok" or "not applicable", with ``reason``).
    """
    from lmladder import registry
    from lmladder.data import load_dataset

    budget = budget or Budget()
    runner = task_options(task, options)
    klass = type(runner)
    subject_model = registry.build(model, overrides)  # a bad override fails before any data
    if klass.own_data is not None:
        if dataset is not None:
            raise ConfigError(f"task {task!r} trains on its own data ({klass.own_data}), not on "
                              f"a dataset: leave out --dataset {dataset}")
        data, data_name = None, klass.own_data
    else:
        data_name = dataset or "ptb"
        data = load_dataset(data_name, data_dir)
        if klass.uses_fitted_model:
            subject_model.fit(data.train.ids, data.vocab, budget=budget, valid=data.valid.ids)
    subject = Subject(subject_model, data, budget, None if data_dir is None else str(data_dir),
                      fresh=lambda: registry.build(model, overrides))
    head = {"task": task, "model": model, "dataset": data_name, "seed": seed,
            "options": dict(options or {}), "overrides": dict(overrides or {})}
    try:
        return {**head, "status": "ok", **runner.evaluate(subject, seed=seed)}
    except NotApplicable as why:
        return {**head, "status": "not applicable", "reason": str(why)}
