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
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lmladder.api import Budget, LanguageModel, NotApplicable
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
    data: Dataset
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


BOOTSTRAP_RESAMPLES = RESAMPLES  # resamples of a task's bootstrap intervals


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


def bootstrap_note(seed: int, over: str, resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """What a result records about its ``*_ci95`` bootstrap intervals."""
    return {"resamples": resamples, "seed": seed, "over": over,
            "interval": "95% percentile, paired (the same resamples for every system)"}


TASKS: dict[str, str] = {  # built-in task name -> "module:Class"
    "cloze": "lmladder.tasks.cloze:Cloze",
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


def run_task(task: str, model: str, *, dataset: str = "ptb", data_dir=None,
             budget: Budget | None = None, seed: int = 0,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run task ``task`` for registry model ``model`` (config ``overrides``) on ``dataset``.

    The model is fitted on the dataset's training split under ``budget`` when the task scores
    it; tasks that train their own models build them from the same entry and config.  Returns
    the task's scores with ``task``, ``model``, ``dataset``, ``seed`` and ``status`` ("ok" or
    "not applicable", with ``reason``).
    """
    from lmladder import registry
    from lmladder.data import load_dataset

    budget = budget or Budget()
    klass = task_class(task)
    data = load_dataset(dataset, data_dir)
    subject_model = registry.build(model, overrides)
    if klass.uses_fitted_model:
        subject_model.fit(data.train.ids, data.vocab, budget=budget, valid=data.valid.ids)
    subject = Subject(subject_model, data, budget, None if data_dir is None else str(data_dir),
                      fresh=lambda: registry.build(model, overrides))
    head = {"task": task, "model": model, "dataset": dataset, "seed": seed}
    try:
        return {**head, "status": "ok", **klass().evaluate(subject, seed=seed)}
    except NotApplicable as why:
        return {**head, "status": "not applicable", "reason": str(why)}
