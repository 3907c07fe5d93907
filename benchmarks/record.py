"""A cell's result as a typed, validated value: :class:`Record`, read from and written to JSON.

The runner makes one :class:`~lmladder.plan.CellPlan` per cell, the cell's process measures it,
and the driver writes a :class:`Record`; reports read nothing else::

    matrix.toml ──load_matrix──▶ Cell ──plan_cell──▶ CellPlan ──measure (child)──▶ Record ──▶ JSON
                                                                                     │
                         report.html ◀──render── [Record, ...] ◀──Record.from_json──┘

A record on disk is a JSON object (schema :data:`API_VERSION`)::

    {"api_version": 4, "key": "...", "status": "ok" | "failed" | "skipped", "error": None | {...},
     "cell": {"matrix", "model", "label", "config", "dataset", "seed", "device", "budget",
              "scoring", "threads", "fraction", "tasks"},
     "budget_used": {... the budget scaled by the fraction ...},
     "limits": {"time_limit_s", "memory_limit_mib", "isolated"},
     "model": {"class", "revision", "family", "parameters", "disk_bytes"},
     "saved_model": "<record stem>.model" (only with --save-models),
     "dataset": {... Dataset.summary() ...},
     "protocol": {... ContextPolicy ..., "accuracy_tokens", "first_context"},
     "metrics": {"valid": {...}, "test": {...}, "test_accuracy": {...},
                 "test_pseudo": None | {... pseudo-perplexity of a masked LM ...}},
     "oracle": None | {"valid": {...}, "test": {...}},
     "throughput": {"train_tokens_per_s", "score_tokens_per_s", "generate_tokens_per_s"},
     "timing": {"fit_s", "valid_in_fit_s", "score_valid_s", "score_test_s", "generate_s"},
     "memory": {"rss_start_mib", "rss_peak_mib", "device_peak_mib"},
     "fit": {... FitReport ...}, "inspect": [...], "sample": "...",
     "tasks": {name: {"status": "ok" | "not applicable" | "failed" | "skipped", "seconds",
                      "metrics": [{"name", "higher_is_better", "chance"}, ...],
                      ... the task's scores ...}},
     "provenance": {"git_commit", "git_dirty", "date", "python", "platform", "versions", ...,
                    "node" (Ray runs only)}}

:func:`lmladder.results.parse_record` migrates versions 1 to 3 forward
(:mod:`lmladder.migrate`) and :meth:`Record.from_json` refuses, with one line naming the
file and the field, anything a report could not trust: a missing or mistyped field, an unknown
status, a metric that is negative, NaN or infinite.  After that, every section a report reads
has the shape documented above, so the report checks nothing again.  Sections stay plain
mappings and lists of JSON values (read-only by convention): they are data, and
:meth:`Record.to_json` writes them back unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmladder.numbers import finite

API_VERSION = 4
STATUSES = ("ok", "failed", "skipped")
TASK_STATUSES = ("ok", "not applicable", "failed", "skipped")
# sections a record may carry besides key, status, error, cell and tasks
SECTIONS = ("limits", "dataset", "protocol", "model", "budget_used", "metrics", "oracle",
            "throughput", "timing", "memory", "fit")


class RecordError(ValueError):
    """A file in a results folder is not a readable record; the message is one line."""


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task reports: which way is better, and what guessing scores (``None``: no
    chance level is known).  Tasks declare theirs; every task result carries them, so a report
    ranks task scores without importing any task."""

    name: str
    higher_is_better: bool
    chance: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CellSection:
    """The record's ``cell``: what was planned, as the plan resolved it (device and threads
    resolved, the budget as given with the run's cap, before scaling by ``fraction``)."""

    matrix: str
    model: str
    label: str
    config: Mapping[str, Any]
    dataset: str
    seed: int
    device: str
    budget: Mapping[str, Any]
    scoring: Mapping[str, Any]
    threads: int | None
    fraction: float
    tasks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["config"], out["budget"] = dict(self.config), dict(self.budget)
        out["scoring"], out["tasks"] = dict(self.scoring), list(self.tasks)
        return out


@dataclass(frozen=True)
class ErrorInfo:
    """Why a cell failed or was skipped: the exception's type name, its message, and the
    traceback where one was caught."""

    type: str
    message: str
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome for a cell: its status, the metrics it reports (with direction and
    chance) and its scores (every other field of the task's JSON, e.g. ``accuracy``,
    ``accuracy_ci95``, ``items``)."""

    status: str
    seconds: float | None = None
    metrics: tuple[MetricSpec, ...] = ()
    scores: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    reason: str | None = None  # why the task was not applicable

    def score(self, name: str) -> float | None:
        """A numeric score, or ``None`` where the task did not report it."""
        return finite(self.scores.get(name))

    def spec(self, name: str) -> MetricSpec | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.error is not None:
            out["error"] = self.error.to_json()
        out.update(self.scores)
        out["metrics"] = [m.to_json() for m in self.metrics]
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


@dataclass(frozen=True)
class Record:
    """One cell's result: its plan as recorded (:attr:`cell`), status and error, the
    measurements (``metrics``, ``throughput``, ``timing``, ``memory``, ``fit``, ...), its task
    results and its provenance.  Build one with :meth:`from_json` (validating) and write it with
    :meth:`to_json`; a report reads records and nothing else."""

    key: str
    status: str
    cell: CellSection
    provenance: Mapping[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None
    limits: Mapping[str, Any] | None = None
    dataset: Mapping[str, Any] | None = None
    protocol: Mapping[str, Any] | None = None
    model: Mapping[str, Any] | None = None
    budget_used: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    oracle: Mapping[str, Any] | None = None
    throughput: Mapping[str, Any] | None = None
    timing: Mapping[str, Any] | None = None
    memory: Mapping[str, Any] | None = None
    fit: Mapping[str, Any] | None = None
    inspect: list | None = None
    sample: str | None = None
    saved_model: str | None = None
    tasks: Mapping[str, TaskResult] = field(default_factory=dict)

    # -- what reports ask of every record ------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def family(self) -> str:
        """The model's family ("n-gram", "HMM", "RNN", "Transformer", ...; "other" where the
        record does not say)."""
        return str((self.model or {}).get("family") or "other")

    @property
    def date(self) -> str:
        """When the record was written (ISO 8601, UTC), or "" where it does not say."""
        return str(self.provenance.get("date") or "")

    def metric(self, split: str, name: str) -> float | None:
        """``metrics[split][name]`` as a float, or ``None`` where the record has none."""
        section = (self.metrics or {}).get(split)
        return finite(section.get(name)) if isinstance(section, Mapping) else None

    def replace(self, **changes: Any) -> Record:
        return dataclasses.replace(self, **changes)

    # -- JSON ----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object written to disk (schema :data:`API_VERSION`)."""
        out: dict[str, Any] = {
            "api_version": API_VERSION,
            "key": self.key,
            "status": self.status,
            "error": None if self.error is None else self.error.to_json(),
            "cell": self.cell.to_json(),
            "provenance": dict(self.provenance),
        }
        # an ok record always has "oracle" and "sample" (null: no source model, no sample) and
        # "tasks"; a cell that failed has what it got to, as every record before schema 4
        for name in SECTIONS:
            value = getattr(self, name)
            if value is not None or (self.ok and name == "oracle"):
                out[name] = value
        for name in ("inspect", "sample", "saved_model"):
            if getattr(self, name) is not None or (self.ok and name == "sample"):
                out[name] = getattr(self, name)
        if self.ok or self.tasks:
            out["tasks"] = {name: result.to_json() for name, result in self.tasks.items()}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str | Path = "<record>") -> Record:
        """The record in ``data`` (a JSON object of schema :data:`API_VERSION`), checked;
        :class:`RecordError` names ``where`` and the first field that is wrong.  Older schemas
        are brought forward by :func:`lmladder.results.parse_record`."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: a JSON {type(data).__name__}, not a result record")
        if data.get("api_version") != API_VERSION:
            raise RecordError(f"{where}: api_version {data.get('api_version')!r} is not "
                              f"{API_VERSION}; read it with lmladder.results.parse_record")
        return _build(data, _Where(str(where)))


class _Where:
    """Names the file and the field in every refusal."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, problem: str) -> RecordError:
        return RecordError(f"{self.where}: {path} {problem}")


def _build(data: dict, at: _Where) -> Record:
    key, status = data.get("key"), data.get("status")
    if not isinstance(key, str) or not key:
        raise at.fail("key", "is missing or not a string (not a result record)")
    if status not in STATUSES:
        raise at.fail("status", f"is {status!r}; a record's status is one of {', '.join(STATUSES)}")
    sections = {}
    for name in SECTIONS:
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            raise at.fail(name, f"is a {type(value).__name__}, not an object")
        sections[name] = value
    _check_metrics(sections["metrics"], "metrics", at, required=status == "ok")
    _check_metrics(sections["oracle"], "oracle", at, required=False)
    for name in ("throughput", "timing", "memory"):
        for k, v in (sections[name] or {}).items():
            _non_negative(v, f"{name}.{k}", at)
    model = sections["model"] or {}
    if status == "ok" and not isinstance(model.get("family"), str):
        raise at.fail("model.family", "is missing (not a result record)")
    for name, kind in (("inspect", list), ("sample", str), ("saved_model", str)):
        value = data.get(name)
        if value is not None and not isinstance(value, kind):
            raise at.fail(name, f"is a {type(value).__name__}, not a {kind.__name__}")
    provenance = data.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise at.fail("provenance", "is not an object")
    return Record(
        key=key, status=status, cell=_cell(data.get("cell"), at),
        provenance=provenance, error=_error(data.get("error"), "error", at),
        inspect=data.get("inspect"), sample=data.get("sample"),
        saved_model=data.get("saved_model"), tasks=_tasks(data.get("tasks"), at), **sections,
    )


def _cell(cell: Any, at: _Where) -> CellSection:
    if not isinstance(cell, dict):
        raise at.fail("cell", "is missing or not an object (not a result record)")
    for name in ("matrix", "model", "label", "dataset", "device"):
        if not isinstance(cell.get(name), str):
            raise at.fail(f"cell.{name}", "is missing or not a string (not a result record)")
    seed = cell.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise at.fail("cell.seed", f"is {seed!r}, not a whole number >= 0")
    threads = cell.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise at.fail("cell.threads", f"is {threads!r}, not a whole number >= 1")
    fraction = finite(cell.get("fraction", 1.0))
    if fraction is None or not 0 < fraction <= 1:
        raise at.fail("cell.fraction", f"is {cell.get('fraction')!r}, not a share in (0, 1]")
    for name in ("config", "budget", "scoring"):
        if not isinstance(cell.get(name, {}), dict):
            raise at.fail(f"cell.{name}", "is not an object")
    for k, v in cell.get("budget", {}).items():
        if v is not None and (finite(v) is None or v <= 0):
            raise at.fail(f"cell.budget.{k}", f"is {v!r}, not a positive number")
    tasks = cell.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise at.fail("cell.tasks", "is not a list of task names")
    return CellSection(
        matrix=cell["matrix"], model=cell["model"], label=cell["label"],
        config=cell.get("config", {}), dataset=cell["dataset"], seed=seed,
        device=cell["device"], budget=cell.get("budget", {}), scoring=cell.get("scoring", {}),
        threads=threads, fraction=fraction, tasks=tuple(tasks),
    )


def _error(error: Any, path: str, at: _Where) -> ErrorInfo | None:
    if error is None:
        return None
    if not (isinstance(error, dict) and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str)):
        raise at.fail(path, "is not an object with a type and a message")
    tb = error.get("traceback")
    return ErrorInfo(error["type"], error["message"], tb if isinstance(tb, str) else None)


def _check_metrics(metrics: dict | None, path: str, at: _Where, *, required: bool) -> None:
    """Every number in a metrics section is finite and >= 0 (perplexities, nats, bits, token
    counts, accuracies); an ok record has perplexity on valid and test."""
    for split, section in (metrics or {}).items():
        if section is None:
            continue
        if not isinstance(section, dict):
            raise at.fail(f"{path}.{split}", "is not an object")
        for name, value in section.items():
            if value is not None and not isinstance(value, (str, list, dict)):
                _non_negative(value, f"{path}.{split}.{name}", at)
    if required:
        for split in ("valid", "test"):
            section = (metrics or {}).get(split)
            if not isinstance(section, dict) or finite(section.get("ppl")) is None:
                raise at.fail(f"{path}.{split}.ppl", "is missing from an ok record")


def _non_negative(value: Any, path: str, at: _Where) -> None:
    if value is None:
        return
    number = finite(value)
    if number is None or number < 0:
        raise at.fail(path, f"is {value!r}; a measurement is a finite number >= 0")


def _tasks(tasks: Any, at: _Where) -> dict[str, TaskResult]:
    if tasks is None:
        return {}
    if not isinstance(tasks, dict):
        raise at.fail("tasks", "is not an object")
    out = {}
    for name, result in tasks.items():
        path = f"tasks.{name}"
        if not isinstance(result, dict):
            raise at.fail(path, "is not an object")
        status = result.get("status")
        if status not in TASK_STATUSES:
            raise at.fail(f"{path}.status", f"is {status!r}; one of {', '.join(TASK_STATUSES)}")
        specs = result.get("metrics", [])
        if not isinstance(specs, list):
            raise at.fail(f"{path}.metrics", "is not a list of metric specs")
        metrics = tuple(_spec(s, f"{path}.metrics[{i}]", at) for i, s in enumerate(specs))
        scores = {k: v for k, v in result.items()
                  if k not in ("status", "seconds", "metrics", "error", "reason")}
        for k, v in scores.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise at.fail(f"{path}.{k}", f"is {v!r}; a score is a finite number")
        seconds = result.get("seconds")
        if seconds is not None:
            _non_negative(seconds, f"{path}.seconds", at)
        reason = result.get("reason")
        out[name] = TaskResult(
            status=status, seconds=seconds, metrics=metrics, scores=scores,
            error=_error(result.get("error"), f"{path}.error", at),
            reason=reason if isinstance(reason, str) else None,
        )
    return out


def _spec(spec: Any, path: str, at: _Where) -> MetricSpec:
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("higher_is_better"), bool)):
        raise at.fail(path, "is not a metric spec (name, higher_is_better, chance)")
    chance = spec.get("chance")
    if chance is not None and finite(chance) is None:
        raise at.fail(f"{path}.chance", f"is {chance!r}, not a finite number")
    return MetricSpec(spec["name"], spec["higher_is_better"], chance)
