"""The runner: claims each cell of a matrix, has it computed, and writes its record.

The cell's life, from plan to record::

    Matrix ─select_cells─▶ [Cell] ─Runner.claim─▶ Claim(plan, lock, path) ─executor─▶ Record
                                    │  plan_cell: budget, threads, seed,           │
                                    │  device, limits, resources, key resolved     ▼
                                    └─ DONE: an ok record with the plan's key ── Runner.finish:
                                       exists (skipped unless ``force``)        write the record,
                                                                                release the lock

Every cell is claimed under a lock that concurrent runs of the same folder respect.  A cell whose
record exists with status ``ok`` is skipped unless ``force``; a forced rerun that fails keeps the
ok record and writes the failed attempt beside it.  Failures are recorded and the run goes on.

Where cells are computed is the executor's business: ``"local"`` runs them one after another on
this machine (:func:`lmladder.cell.run_cell`), ``"ray"`` (:mod:`lmladder.ray_executor`) as
tasks on a Ray cluster asking for the plan's ``resources``.  Either way this process -- the
driver -- claims each cell (:meth:`Runner.claim`) and writes its record (:meth:`Runner.finish`),
so resuming, skipping ok records, locks and ``force`` behave the same.  Resources are not part of
a record's key: where a cell runs does not change its numbers.  With ``save_models`` a cell's
fitted model is kept as ``<results>/<record file stem>.model/`` (``record.saved_model``); a stale
partial model folder of a killed run goes at the next run, once no run holds its cell's lock.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmladder import isolate, registry
from lmladder.cell import (
    MODEL_SUFFIX,
    PARTIAL,
    FitCallbackFactory,
    model_folder,
    partial_model_folder,
    run_cell,
)
from lmladder.files import refuse_link, remove_orphans
from lmladder.matrix import Cell, Matrix, select_cells
from lmladder.plan import CellPlan, Limits, plan_cell, stale_corpus
from lmladder.record import Record, RecordError
from lmladder.results import read_record, record_path, write_record


class ResultsError(ValueError):
    """The results folder cannot be used (it is a file, or cannot be written)."""


class ExecutorError(ValueError):
    """The executor cannot be used (an optional package is missing, no cluster answers)."""


Executor = Literal["local", "ray"]
# executors besides the local one, named as strings like the registry's models: they import
# this module, and an optional package (ray) only when chosen
REMOTE_EXECUTORS = {"ray": "lmladder.ray_executor:run_cells"}
EXECUTORS = ("local", *REMOTE_EXECUTORS)


def cell_lock(results_dir: Path, stem: str) -> isolate.CellLock:
    """The lock of the cell whose record file is ``<stem>.json`` in ``results_dir``."""
    return isolate.CellLock(results_dir / ".locks" / f"{stem}.lock")


def _remove_stale_models(results_dir: Path) -> None:
    """Remove the partial model folders of cells whose lock nobody holds (a run killed while
    saving), or put back a model a killed rerun had moved aside."""
    for partial in results_dir.glob(f"{PARTIAL}*{MODEL_SUFFIX}*"):
        refuse_link(partial)  # never moved into place, never emptied through a link
        name = partial.name.removeprefix(PARTIAL).removesuffix(".old")
        lock = cell_lock(results_dir, name.removesuffix(MODEL_SUFFIX))
        if not lock.acquire(block=False):
            continue
        try:
            if partial.name.endswith(".old") and not (results_dir / name).exists():
                os.replace(partial, results_dir / name)
            else:
                shutil.rmtree(partial, ignore_errors=True)
        finally:
            lock.release()


@dataclass
class RunSummary:
    done: int = 0
    skipped_existing: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ok records a failed forced rerun left alone
    notes: list[str] = field(default_factory=list)  # unreadable records rerun, orphans removed
    paths: list[Path] = field(default_factory=list)


def prepare_results_dir(results_dir: str | Path) -> Path:
    """Create the results folder (or check it), remove temporary files of dead runs."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise ResultsError(f"{results_dir}: is a file, not a results folder; give a folder")
    refuse_link(results_dir / ".locks")  # a lock opened through it would write its target
    try:
        (results_dir / ".locks").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if (results_dir / ".locks").exists():  # a file named .locks, not lmladder's folder
            raise ResultsError(f"{results_dir / '.locks'}: is a file, not the results folder's "
                               "lock folder; remove it") from None
        raise ResultsError(
            f"{results_dir}: cannot create the results folder ({err.strerror or err})"
        ) from None
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise ResultsError(f"{results_dir}: the results folder is not writable")
    remove_orphans(results_dir)
    _remove_stale_models(results_dir)
    return results_dir


def run_matrix(
    matrix: Matrix,
    results_dir: str | Path,
    *,
    data_dir=None,
    force: bool = False,
    only: set[str] | None = None,
    limits: Limits = Limits(),
    isolated: bool = True,
    save_models: bool = False,
    executor: Executor = "local",
    address: str | None = None,
    on_cell_start: Callable[[CellPlan, int, int], None] | None = None,
    on_cell_end: Callable[[CellPlan, Record], None] | None = None,
    on_wait: Callable[[Cell], None] | None = None,
    on_cell_placed: Callable[[CellPlan, str, int], None] | None = None,
    fit_callback_factory: FitCallbackFactory | None = None,
) -> RunSummary:
    """Run every cell not already done; each finished cell's record is on disk immediately.

    Each cell is claimed with a lock first: a cell another run is computing is left to it and
    waited for at the end (and run here if that run died without a record).  ``executor="ray"``
    computes the cells as tasks of the Ray cluster at ``address`` (None: a Ray instance of this
    machine's CPUs; see :mod:`lmladder.ray_executor`), telling ``on_cell_placed(plan, node,
    attempt)`` as a cell starts on a node; the fit callbacks are local runs' only.  Each cell is
    planned once (:func:`lmladder.plan.plan_cell`) when it is claimed; ``on_cell_start`` and
    ``on_cell_end`` receive its plan.
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ExecutorError(f"address {address!r} names a Ray cluster; use it with executor 'ray'")
    todo = select_cells(matrix, only)
    runner = Runner(matrix, prepare_results_dir(results_dir), force=force, limits=limits,
                    isolated=isolated, save_models=save_models, on_cell_end=on_cell_end)
    if executor in REMOTE_EXECUTORS:
        run_cells = registry.import_target(REMOTE_EXECUTORS[executor])
        run_cells(runner, todo, address=address, data_dir=data_dir,
                  on_cell_start=on_cell_start, on_wait=on_wait, on_cell_placed=on_cell_placed)
        return runner.summary
    busy: list[tuple[int, Cell]] = []
    for i, cell in enumerate(todo):
        claim = runner.claim(cell, i, len(todo), block=False)
        if claim is BUSY:
            busy.append((i, cell))
        elif claim is not DONE:
            _compute_here(runner, claim, data_dir, on_cell_start, fit_callback_factory)
    for i, cell in busy:
        if on_wait:
            on_wait(cell)
        claim = runner.claim(cell, i, len(todo), block=True, force=False)
        if claim is not DONE:
            _compute_here(runner, claim, data_dir, on_cell_start, fit_callback_factory)
    return runner.summary


def _compute_here(runner, claim, data_dir, on_cell_start, fit_callback_factory) -> None:
    """The local executor: compute the claimed cell on this machine, then write its record."""
    try:
        if on_cell_start:
            on_cell_start(claim.plan, claim.index, claim.of)
        cb = fit_callback_factory(claim.plan.label) if fit_callback_factory else None
        record = run_cell(claim.plan, data_dir=data_dir, fit_callback=cb,
                          save_model_to=claim.save_model_to)
    except BaseException:
        claim.lock.release()
        raise
    runner.finish(claim, record)


def _say_out_of_memory(record: Record, limit_mib: int | None) -> Record:
    """``record`` with the error of a cell (or task) that died of its memory limit saying so
    (:func:`lmladder.isolate.memory_limit_explains`), whatever the library that hit it said."""
    if not limit_mib:
        return record
    if record.error is not None and record.status == "failed":
        line = isolate.memory_limit_explains(record.error.type, record.error.message, limit_mib)
        if line is not None:
            record = record.replace(error=dataclasses.replace(record.error, message=line))
    tasks = dict(record.tasks)
    for name, result in tasks.items():
        if result.status == "failed" and result.error is not None:
            line = isolate.memory_limit_explains(result.error.type, result.error.message,
                                                 limit_mib)
            if line is not None:
                tasks[name] = dataclasses.replace(
                    result, error=dataclasses.replace(result.error, message=line))
    return record.replace(tasks=tasks) if tasks != dict(record.tasks) else record


DONE = "done"  # Runner.claim: the cell has an ok record (or another run just wrote one)
BUSY = "busy"  # Runner.claim: another run holds the cell's lock


@dataclass
class Claim:
    """A cell whose lock this run holds: its record goes to ``path``."""

    plan: CellPlan
    index: int  # the cell's place among the ``of`` cells of the run
    of: int
    path: Path
    lock: isolate.CellLock
    latest: Record | None  # the record on disk when claimed: an ok one outlives a failed rerun
    save_model_to: Path | None


@dataclass
class Runner:
    """The driver's side of a run, whatever computes its cells: claims cells (:meth:`claim`),
    writes their records (:meth:`finish`) and keeps the :class:`RunSummary`."""

    matrix: Matrix
    results_dir: Path
    force: bool = False
    limits: Limits = Limits()
    isolated: bool = True  # each cell in a child process of its own, under its limits
    save_models: bool = False
    on_cell_end: Callable[[CellPlan, Record], None] | None = None
    summary: RunSummary = field(default_factory=RunSummary)

    def claim(self, cell: Cell, index: int, of: int, *, block: bool,
              force: bool | None = None) -> Claim | str:
        """Lock ``cell`` for this run: a :class:`Claim`, or :data:`DONE` when its ok record
        exists and is not to be rerun (``force`` defaults to the run's), or :data:`BUSY` when
        another run holds its lock and ``block`` is false."""
        force = self.force if force is None else force
        plan = plan_cell(self.matrix, cell, self.limits, isolated=self.isolated)
        path = record_path(self.results_dir, plan.section(), plan.key)
        # refused before the cell is computed, not when its record or model is written
        for where in (path, model_folder(path), partial_model_folder(model_folder(path))):
            refuse_link(where)
        before = self._existing(path)
        if not force and before is not None and before.ok and not stale_corpus(before, plan):
            return self._done(path)
        lock = cell_lock(self.results_dir, path.stem)
        if not lock.acquire(block=block):
            return BUSY
        latest = self._existing(path)
        if latest is not None and latest.ok and not stale_corpus(latest, plan) and (
            not force or before is None or latest.provenance != before.provenance
        ):  # another run finished it while we waited for the lock
            lock.release()
            return self._done(path)
        return Claim(plan, index, of, path, lock, latest,
                     model_folder(path) if self.save_models else None)

    def finish(self, claim: Claim, record: Record) -> None:
        """Write the claimed cell's record (beside an ok one that a failed rerun must not
        replace), release its lock and count it in the summary."""
        plan, path = claim.plan, claim.path
        what = plan.describe()
        record = _say_out_of_memory(record, plan.limits.memory_limit_mib)
        try:
            if claim.latest is not None and claim.latest.ok and not record.ok:
                stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                attempt = path.with_name(f"{path.stem}.{record.status}-{stamp}.json")
                write_record(attempt, record)
                self.summary.kept.append(
                    f"{what}: the ok record is kept; this attempt is in {attempt}")
            else:
                write_record(path, record)
            self.summary.paths.append(path)
        finally:
            claim.lock.release()
        self._count(what, record)
        if self.on_cell_end:
            self.on_cell_end(plan, record)

    def _count(self, what: str, record: Record) -> None:
        summary = self.summary
        for task, result in record.tasks.items():
            if result.status == "failed" and result.error is not None:
                summary.failed.append(f"{what}: task {task}: {result.error.type}: "
                                      f"{result.error.message}")
            elif result.status == "skipped" and result.error is not None:
                summary.skipped.append(f"{what}: task {task}: {result.error.message}")
        if record.ok:
            summary.done += 1
        elif record.status == "skipped":
            summary.skipped.append(f"{what}: {record.error.message}")
        else:
            summary.failed.append(f"{what}: {record.error.type}: {record.error.message}")

    def _done(self, path: Path) -> str:
        self.summary.skipped_existing += 1
        self.summary.paths.append(path)
        return DONE

    def _existing(self, path: Path) -> Record | None:
        if not path.exists():
            return None
        try:
            return read_record(path)
        except RecordError as err:
            self.summary.notes.append(f"{err}; the cell is run again")
            return None
