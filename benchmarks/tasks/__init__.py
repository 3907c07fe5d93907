"""Task scores: what a language model's probabilities buy, measured through the contract only.

A task is a class with a name, a one-line description and the metrics it reports, each with its
direction and chance level (so a report never guesses which way is better).  Built-in tasks are
listed in :data:`TASKS`; installed distributions add their own through the entry-point group
``lmladder.tasks`` (checked and, if broken, reported once and skipped, as models are).  A task
reaches a model only through :class:`~lmladder.api.LanguageModel` (``token_logprobs``,
``generate``, ``fit``), so every registered model can run every task.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from lmladder.api import LanguageModel
from lmladder.corpus import Dataset
from lmladder.registry import class_path, import_target, load_entry_points, unknown

PLUGIN_GROUP = "lmladder.tasks"


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: which way is better, and what guessing scores."""

    name: str
    higher_is_better: bool
    chance: float | None = None


class Task(ABC):
    """One task: builds its items from a dataset with a recorded seed, then scores a model."""

    name: ClassVar[str]
    description: ClassVar[str]
    metrics: ClassVar[tuple[MetricSpec, ...]]

    @abstractmethod
    def evaluate(self, model: LanguageModel, data: Dataset, *, seed: int = 0) -> dict[str, Any]:
        """Score fitted ``model`` on the task's items drawn from ``data`` with ``seed``.

        Returns ``{metric name: value, ...}`` plus whatever identifies the items (counts, seed).
        The same dataset and seed give the same items on every machine.
        """


def wilson_interval(hits: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``hits / n`` (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


TASKS: dict[str, str] = {  # built-in task name -> "module:Class"
    "cloze": "lmladder.tasks.cloze:Cloze",
}


@functools.cache
def _plugins() -> tuple[dict[str, str], tuple[str, ...]]:
    plugins, problems = load_entry_points(PLUGIN_GROUP, TASKS, _not_a_task)
    return {p.name: class_path(p.obj) for p in plugins}, problems


def _not_a_task(obj: Any) -> str | None:
    if isinstance(obj, type) and issubclass(obj, Task) and not obj.__abstractmethods__:
        return None
    return f"{obj!r} is not a concrete subclass of lmladder.tasks.Task"


def plugin_problems() -> tuple[str, ...]:
    """One line per ``lmladder.tasks`` entry point that was skipped, and why."""
    return _plugins()[1]


def tasks() -> dict[str, str]:
    """Every task by name: the built-in ones, then installed plugins."""
    return {**TASKS, **_plugins()[0]}


def task_class(name: str) -> type[Task]:
    known = tasks()
    if name not in known:
        raise unknown("task", name, known)
    return import_target(known[name])
