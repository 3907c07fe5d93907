"""One cell's plan: everything a cell needs resolved once, in one place, before it runs.

A matrix :class:`~lmladder.matrix.Cell` says what was asked for ("auto" device, "auto" threads,
a budget in the file, maybe a run-wide cap, a share of the training data).  :func:`plan_cell`
resolves all of it, once per cell, into a frozen :class:`CellPlan` that the runner, the
command line's progress bars, the Ray executor and the cell's own process read; none of them
resolves anything again::

    ModelSection.budget ─┐                       ┌─▶ plan.budget      (Budget: the cell's, capped)
    Limits.max_seconds ──┼─ plan_cell(matrix, ───┼─▶ plan.fit_budget  (Budget: scaled by fraction)
    Cell.fraction ───────┤    cell, limits)      ├─▶ plan.threads     (int)
    threads "auto"|N ────┤                       ├─▶ plan.device      ("cpu", "cuda", ...)
    Cell.seed ───────────┤                       ├─▶ plan.build_config (overrides, seed included)
    device "auto"|... ───┘                       └─▶ plan.key, plan.limits, plan.resources

The key hashes what determines the cell's numbers (its recorded ``cell`` section less label and
matrix name) with the code version, so a renamed label or matrix finds its finished cells.  A user
corpus (``text:PATH``, ``chars:PATH``) is keyed by its path; its content's SHA-256 is recorded
(``dataset.source.sha256``) and a record of other content is not "done" (see
:func:`stale_corpus`): the cell runs again, and a rerun that fails keeps the old ok record.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmladder import registry
from lmladder._version import __version__
from lmladder.api import Budget, ConfigError, build_config
from lmladder.data import corpus_sha256
from lmladder.devices import resolve_device
from lmladder.matrix import Cell, Matrix, Resources, ScoringSection, _check_limits
from lmladder.record import CellSection, Record
from lmladder.results import cell_key

DEFAULT_TIME_LIMIT = 1800.0  # seconds; a cell with a time budget gets at least 2x it + 10 min
# The record schema that keys are hashed with.  Schema 4 only added fields derived from what
# schema 3 records held (task metric specs, the model's family), so a cell's key, and hence its
# finished record, stays the same.
KEY_SCHEMA = 3


def auto_threads() -> int:
    """The default torch threads per cell: the CPUs this process may use, less one for the rest
    of the machine (a torch pool that spins on every core slowed scoring 5-7x on a shared
    2-core machine), at least 1 and at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus - 1))


@dataclass(frozen=True)
class Limits:
    """Run-wide overrides (from the command line) of the matrix's threads and limits."""

    threads: int | None = None
    time_limit: float | None = None
    memory_limit_mib: int | None = None
    max_seconds: float | None = None  # caps every cell's training time (its budget's ``seconds``)

    def __post_init__(self) -> None:
        try:
            _check_limits(self.threads, self.time_limit, self.memory_limit_mib)
            s = self.max_seconds
            if s is not None and not (math.isfinite(s) and s > 0):
                raise ValueError(f"max_seconds must be a positive number of seconds, got {s}")
        except ValueError as err:  # named as the command line spells it (--memory-limit, ...)
            key = str(err).split()[0]
            flag = {"memory_limit_mib": "memory-limit"}.get(key, key.replace("_", "-"))
            raise ConfigError(f"{key} (--{flag}) {str(err).removeprefix(key).strip()}") from None


@dataclass(frozen=True)
class CellLimits:
    """What the cell's process may take: seconds before it is stopped, its address space in
    MiB (``None``: no limit), and whether it runs in a child process at all."""

    time_limit_s: float | None
    memory_limit_mib: int | None
    isolated: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CellPlan:
    """One cell, resolved: read by the runner, the progress bars, Ray and the cell's process.

    ``budget`` is the cell's budget with the run's cap (part of the key); ``fit_budget`` is what
    ``fit`` receives, scaled by the cell's share of the training data.  ``config`` is the
    model's full configuration as recorded (registry defaults and the matrix's overrides);
    ``build_config`` is what the model is built with (the overrides, and the cell's seed where
    the model takes one)."""

    matrix: str
    cell: Cell
    config: Mapping[str, Any]
    build_config: Mapping[str, Any]
    device: str
    threads: int
    budget: Budget
    fit_budget: Budget
    scoring: ScoringSection
    tasks: tuple[str, ...]
    limits: CellLimits
    resources: Resources
    key: str

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def model(self) -> str:
        return self.cell.model.name

    @property
    def dataset(self) -> str:
        return self.cell.dataset

    @property
    def seed(self) -> int:
        return self.cell.seed

    @property
    def fraction(self) -> float:
        return self.cell.fraction

    def section(self) -> CellSection:
        """The record's ``cell``: the plan as recorded."""
        return CellSection(
            matrix=self.matrix, model=self.model, label=self.label, config=dict(self.config),
            dataset=self.dataset, seed=self.seed, device=self.device,
            budget=budget_json(self.budget), scoring=dataclasses.asdict(self.scoring),
            threads=self.threads,
            fraction=self.fraction, tasks=self.tasks,
        )

    def describe(self, *, share: bool = True) -> str:
        """One line naming the cell for messages: ``KN5 on ptb (seed 0, cpu, 0.25 of train)``."""
        part = f", {self.fraction:g} of train" if share and self.fraction != 1 else ""
        return f"{self.label} on {self.dataset} (seed {self.seed}, {self.device}{part})"


def stale_corpus(record: Record, plan: CellPlan) -> bool:
    """Whether ``record`` measured other content of its user corpus than the files now hold (the
    corpus was edited since): its cell is not done.  Records without the hash (written before
    lmladder recorded it) and named corpora (checked against fixed SHA-256s) are never stale."""
    now = corpus_sha256(plan.dataset)
    source = (record.dataset or {}).get("source")
    then = source.get("sha256") if isinstance(source, Mapping) else None
    return now is not None and isinstance(then, str) and then != now


def budget_json(budget: Budget) -> dict[str, Any]:
    """The limits a budget sets, as recorded in a record's ``cell.budget``."""
    return {k: v for k, v in dataclasses.asdict(budget).items() if v is not None}


def plan_cell(matrix: Matrix, cell: Cell, limits: Limits = Limits(), *,
              isolated: bool = True) -> CellPlan:
    """The one place a cell's budget, threads, seed, device, limits and resources resolve."""
    entry = registry.entry(cell.model.name)
    klass = registry.model_class(cell.model.name)
    config = {**entry.defaults, **cell.model.config}
    device = resolve_device(cell.device, klass.devices_for(
        registry.resolved_config(cell.model.name, cell.model.config)))
    chosen = limits.threads or cell.model.threads or matrix.spec.threads
    threads = auto_threads() if chosen == "auto" else int(chosen)
    budget = _capped(build_config(Budget, cell.model.budget, where="budget"), limits.max_seconds)
    build = dict(cell.model.config)
    if "seed" in {f.name for f in dataclasses.fields(klass.Config)}:
        build["seed"] = cell.seed
    tasks = tuple(cell.model.tasks if cell.model.tasks is not None else matrix.spec.tasks)
    given = {**matrix.spec.resources, **cell.model.resources}
    resources = Resources(cpus=float(given.get("cpus", threads)),
                          gpus=float(given.get("gpus", 1 if device.startswith("cuda") else 0)))
    # the recorded cell less its label and matrix name, which do not change its numbers
    keyed = {"model": cell.model.name, "config": config, "dataset": cell.dataset,
             "seed": cell.seed, "device": device, "budget": budget_json(budget),
             "scoring": dataclasses.asdict(matrix.scoring), "threads": threads,
             "fraction": cell.fraction, "tasks": list(tasks)}
    code = {"lmladder": __version__, "model_revision": klass.revision, "results_api": KEY_SCHEMA}
    return CellPlan(
        matrix=matrix.name, cell=cell, config=config, build_config=build, device=device,
        threads=threads, budget=budget, fit_budget=_scaled(budget, cell.fraction),
        scoring=matrix.scoring, tasks=tasks,
        limits=CellLimits(
            time_limit_s=_time_limit(matrix, cell, limits, budget) if isolated else None,
            memory_limit_mib=(limits.memory_limit_mib or matrix.spec.memory_limit_mib)
            if isolated else None,
            isolated=isolated),
        resources=resources, key=cell_key(keyed, code),
    )


def _capped(budget: Budget, cap: float | None) -> Budget:
    """The run's ``max_seconds`` cap, where it is tighter than the budget's own seconds (a cap
    is part of the budget, hence of the cell's key and record)."""
    if cap is None or (budget.seconds is not None and budget.seconds <= cap):
        return budget
    whole = float(cap).is_integer() and cap < 2**53  # int(1e308) would overflow the clock
    return dataclasses.replace(budget, seconds=int(cap) if whole else cap)


def _scaled(budget: Budget, fraction: float) -> Budget:
    """The budget for ``fraction`` of the training data: every limit scaled in proportion
    (counts rounded, at least 1), so each point of a learning curve gets the same budget per
    token."""
    if fraction == 1:
        return budget
    return Budget(
        tokens=None if budget.tokens is None else max(1, round(budget.tokens * fraction)),
        steps=None if budget.steps is None else max(1, round(budget.steps * fraction)),
        seconds=None if budget.seconds is None else budget.seconds * fraction,
    )


def _time_limit(matrix: Matrix, cell: Cell, limits: Limits, budget: Budget) -> float:
    chosen = limits.time_limit or cell.model.time_limit or matrix.spec.time_limit
    if chosen is not None:
        return float(chosen)
    if budget.seconds:
        return max(DEFAULT_TIME_LIMIT, 2 * budget.seconds + 600)
    return DEFAULT_TIME_LIMIT
