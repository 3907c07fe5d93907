"""Matrices: TOML files of models x datasets x seeds x devices, and the runner that fills them.

A matrix file::

    [matrix]
    description = "..."
    datasets = ["synthetic", "ptb"]
    seeds = [0]
    devices = ["auto"]          # "cpu", "cuda", "cuda:N", "mps" or "auto" (the best available)
    threads = "auto"            # torch threads per cell, or a number (recorded in every cell)
    time_limit = 1800           # optional: seconds one cell may take before it is stopped
    memory_limit_mib = 8192     # optional: address-space limit of one cell's process
    tasks = ["cloze"]           # optional: task scores for every cell (lmladder list tasks)
    fractions = [0.25, 1.0]     # optional: a learning curve, each share of the training data
    expected_time = "5 min on 2 CPU cores"  # optional: how long a whole run takes, as measured
                                # (or "estimate ..."); shown by ``lmladder list matrices``
    resources = { cpus = 2, gpus = 0 }  # optional: what a cell asks a Ray cluster for (default:
                                # cpus = the cell's threads, gpus = 1 on a CUDA device, else 0)

    [scoring]                   # lmladder.api.ContextPolicy + accuracy_tokens (the tokens
                                # scored for top-k accuracy and a masked LM's pseudo-ppl)
    reset_at_boundary = false
    accuracy_tokens = 5000

    [[models]]
    name = "kn5"                # a registry entry (lmladder list models)
    label = "KN5"               # optional, defaults to name; unique within the matrix
    config = { order = 5 }      # optional overrides of the entry's hyperparameters
    budget = { seconds = 60 }   # optional: tokens, steps, seconds
    datasets = ["ptb"]          # optional: only these of the matrix's datasets
    threads = 1                 # optional: overrides [matrix] threads
    time_limit = 600            # optional: overrides [matrix] time_limit
    tasks = []                  # optional: overrides [matrix] tasks
    fractions = [0.0625, 1.0]   # optional: overrides [matrix] fractions
    resources = { gpus = 1 }    # optional: overrides [matrix] resources, key by key

A learning-curve point trains on the first share of the training split (cut at a line end) under
the budget scaled by the same share, and is scored on the same valid and test tokens.

Tasks that train their own models (sentiment, translation) build them from the cell's entry and
config and train them under the cell's budget; their scores go into the cell's record.  Every
mistake in a matrix is found when it is loaded, before any cell runs.  Every cell is
fitted, scored on valid and test, timed and written as one JSON record (see
:mod:`lmladder.results`) by a child process of its own (:mod:`lmladder.isolate`), under a lock
that concurrent runs of the same folder respect.  A cell whose record exists with status ``ok``
is skipped unless ``force``; a forced rerun that fails keeps the ok record and writes the failed
attempt beside it.  Failures are recorded and the run goes on.  While a cell runs, its callback
receives the fit's :class:`~lmladder.api.Progress` events and a :class:`Phase` as each of its
steps starts (fit, scoring valid and test, accuracy, generation, each task), through the same pipe.

Every ok cell records the size of its fitted model saved with the contract's ``save``
(``record["model"]["disk_bytes"]``); ``save_models`` keeps that folder as
``<results>/<record file stem>.model/`` (``record["saved_model"]``), written by the cell's process
into a hidden ``.partial-`` folder and renamed into place only when the cell ends well, so a killed
or failed cell leaves no half folder (a stale partial folder goes at the next run, once no run
holds its cell's lock).

Where cells are computed is the executor's business: ``"local"`` runs them one after another on
this machine, ``"ray"`` (:mod:`lmladder.ray_executor`) as tasks on a Ray cluster asking for the
cell's ``resources``.  Either way this process -- the driver -- claims each cell
(:meth:`Runner.claim`) and writes its record (:meth:`Runner.finish`), so resuming, skipping ok
records, locks and ``force`` behave the same.  Resources are not part of a record's key: where a
cell runs does not change its numbers.

``expected_time`` is read, with the rest of ``[matrix]`` and nothing else, by
:func:`read_matrix_section`, so ``lmladder list matrices`` imports no model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmladder import isolate, registry, timing
from lmladder._version import __version__
from lmladder.api import (
    Budget,
    ConfigError,
    ContextPolicy,
    Progress,
    build_config,
    supports_pseudo_logprobs,
)
from lmladder.corpus import SPLITS
from lmladder.data import DATASETS, DataError, DataNotFoundError, load_dataset
from lmladder.devices import resolve_device
from lmladder.files import remove_orphans
from lmladder.results import (
    API_VERSION,
    RecordError,
    cell_key,
    provenance,
    read_record,
    record_path,
    write_record,
)
from lmladder.scoring import (
    metrics_from_logprobs,
    pseudo_perplexity,
    score_accuracy,
    score_split,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

MATRIX_DIR = Path(__file__).parent / "matrices"
GENERATE_TOKENS = 100
DEFAULT_TIME_LIMIT = 1800.0  # seconds; a cell with a time budget gets at least 2x it + 10 min
MAX_SEED = 2**32 - 1  # numpy's seeds
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class MatrixError(ValueError):
    """A matrix file is malformed; the message names the file and the key or line."""


class ResultsError(ValueError):
    """The results folder cannot be used (it is a file, or cannot be written)."""


class ExecutorError(ValueError):
    """The executor cannot be used (an optional package is missing, no cluster answers)."""


Threads = int | Literal["auto"]
Executor = Literal["local", "ray"]
# executors besides the local one, named as strings like the registry's models: they import
# this module, and an optional package (ray) only when chosen
REMOTE_EXECUTORS = {"ray": "lmladder.ray_executor:run_cells"}
EXECUTORS = ("local", *REMOTE_EXECUTORS)


@dataclass(frozen=True)
class Resources:
    """What one cell asks a Ray cluster for: ``cpus`` and ``gpus`` (fractions allowed)."""

    cpus: float | None = None
    gpus: float | None = None

    def __post_init__(self) -> None:
        for key in ("cpus", "gpus"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a number >= 0, got {value}")


def _check_resources(resources: dict) -> None:
    build_config(Resources, resources, where="resources")


@dataclass(frozen=True)
class MatrixSection:
    description: str = ""
    datasets: tuple[str, ...] = ("synthetic",)
    seeds: tuple[int, ...] = (0,)
    devices: tuple[str, ...] = ("auto",)
    threads: Threads = "auto"
    time_limit: float | None = None
    memory_limit_mib: int | None = None
    tasks: tuple[str, ...] = ()
    fractions: tuple[float, ...] = (1.0,)
    expected_time: str | None = None  # free text, one line: "about 5 min on 2 CPU cores"
    resources: dict = field(default_factory=dict)  # see Resources

    def __post_init__(self) -> None:
        _check_fractions(self.fractions)
        _check_resources(self.resources)
        _check_expected_time(self.expected_time)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks lists a task twice: {list(self.tasks)}")
        for key in ("datasets", "seeds", "devices"):
            values = getattr(self, key)
            if not values:
                raise ValueError(f"{key} is empty; list at least one")
            if len(set(values)) != len(values):
                raise ValueError(f"{key} lists a value twice: {list(values)}")
        for seed in self.seeds:
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed {seed} is outside 0 .. {MAX_SEED}")
        for device in self.devices:
            if not DEVICE.match(device):
                raise ValueError(
                    f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N, mps"
                )
        _check_limits(self.threads, self.time_limit, self.memory_limit_mib)


def _check_expected_time(text: str | None) -> None:
    """``expected_time`` is shown on one line of ``lmladder list matrices``: short, printable."""
    if text is None:
        return
    if not text.strip():
        raise ValueError("expected_time is empty; leave it out if the time is not known")
    if len(text) > 80:
        raise ValueError(f"expected_time is {len(text)} characters long; keep it under 80")
    if not text.isprintable():
        raise ValueError(f"expected_time {text!r} holds control characters (a newline, a tab, ...)")


def _check_fractions(fractions: tuple[float, ...] | None) -> None:
    if fractions is None:
        return
    if not fractions:
        raise ValueError("fractions is empty; leave it out to train on all the training data")
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"fractions lists a value twice: {list(fractions)}")
    for f in fractions:
        if not 0 < f <= 1:
            raise ValueError(f"fractions must be in (0, 1] (shares of the training data), got {f}")


def _check_limits(threads, time_limit, memory_limit_mib) -> None:
    if isinstance(threads, int) and not 1 <= threads <= 1024:
        raise ValueError(f"threads must be 'auto' or a number from 1 to 1024, got {threads}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit}")
    if memory_limit_mib is not None and not 64 <= memory_limit_mib <= 2**40:
        raise ValueError(f"memory_limit_mib must be at least 64, got {memory_limit_mib}")


@dataclass(frozen=True)
class ScoringSection:
    reset_at_boundary: bool = False
    window: int | None = None
    stride: int | None = None
    accuracy_tokens: int | None = 5000

    def __post_init__(self) -> None:
        if self.accuracy_tokens is not None and self.accuracy_tokens < 1:
            raise ValueError(
                f"accuracy_tokens must be >= 1 (or left out for all tokens), "
                f"got {self.accuracy_tokens}"
            )
        self.policy()

    def policy(self) -> ContextPolicy:
        return ContextPolicy(self.reset_at_boundary, self.window, self.stride)


@dataclass(frozen=True)
class ModelSection:
    name: str
    label: str | None = None
    config: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None
    threads: Threads | None = None
    time_limit: float | None = None
    tasks: tuple[str, ...] | None = None
    fractions: tuple[float, ...] | None = None
    resources: dict = field(default_factory=dict)  # overrides [matrix] resources, key by key

    def __post_init__(self) -> None:
        _check_fractions(self.fractions)
        _check_resources(self.resources)
        if self.label is not None:
            _check_label(self.label)
        if self.datasets is not None and not self.datasets:
            raise ValueError("datasets is empty; leave it out to use all the matrix's datasets")
        _check_limits(self.threads, self.time_limit, None)


def _check_label(label: str) -> None:
    if not label.strip():
        raise ValueError("label is empty")
    if len(label) > 100:
        raise ValueError(f"label is {len(label)} characters long; keep it under 100")
    if not label.isprintable():
        raise ValueError(f"label {label!r} holds control characters (a newline, a tab, ...)")


@dataclass(frozen=True)
class Matrix:
    name: str
    path: Path
    spec: MatrixSection
    scoring: ScoringSection
    models: tuple[ModelSection, ...]


@dataclass(frozen=True)
class Cell:
    model: ModelSection
    dataset: str
    seed: int
    device: str
    fraction: float = 1.0

    @property
    def label(self) -> str:
        return self.model.label or self.model.name


def resolve_matrix(name_or_path: str) -> Path:
    """A path, or the name of a file in ``benchmarks/matrices`` (with or without ``.toml``)."""
    path = Path(name_or_path)
    if path.is_dir():
        raise MatrixError(f"{path}: is a folder; give a matrix file (.toml) or a matrix name")
    if path.is_file():
        return path
    candidate = MATRIX_DIR / (
        name_or_path if name_or_path.endswith(".toml") else f"{name_or_path}.toml"
    )
    if candidate.is_file():
        return candidate
    raise registry.unknown("matrix", name_or_path, list_matrices())


def list_matrices() -> list[str]:
    return sorted(p.stem for p in MATRIX_DIR.glob("*.toml"))


def read_matrix_section(name_or_path: str) -> MatrixSection:
    """Only the ``[matrix]`` table of a matrix file, checked as :func:`load_matrix` checks it.

    Fast and light (no model, dataset or task is looked up, so torch is not imported): for
    listings such as ``lmladder list matrices``.  A file that cannot be read or parsed, or whose
    ``[matrix]`` table is wrong, raises :class:`MatrixError` naming the file."""
    path = resolve_matrix(name_or_path)
    raw = _read_toml(path)
    try:
        return build_config(MatrixSection, _table(raw, "matrix", path), where=f"{path}: [matrix]")
    except ConfigError as err:
        raise MatrixError(str(err)) from None


def _read_toml(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise MatrixError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise MatrixError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MatrixError(f"{path}: malformed TOML: {err}") from None


def _table(raw: dict, key: str, path: Path) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise MatrixError(f"{path}: {key} must be a table ([{key}]), got {value!r}")
    return value


def _model_tables(raw: dict, path: Path) -> list[dict]:
    value = raw.get("models", [])
    if isinstance(value, dict):
        raise MatrixError(
            f"{path}: write each model as [[models]] (an array of tables), not [models]"
        )
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise MatrixError(f"{path}: models must be [[models]] tables, got {value!r}")
    if not value:
        raise MatrixError(f"{path}: no [[models]] entries")
    return value


def load_matrix(name_or_path: str) -> Matrix:
    """Parse and check a matrix file: every mistake (unknown keys, models, datasets, devices,
    configs, budgets, labels, limits) is a :class:`MatrixError` naming the file and the key."""
    path = resolve_matrix(name_or_path)
    if not NAME.match(path.stem) or path.stem.strip(".") == "":
        raise MatrixError(
            f"{path}: the file name {path.name!r} gives no usable matrix name; rename it "
            "(letters, digits, '.', '_', '-', '+', not starting with '.')"
        )
    raw = _read_toml(path)
    unknown_tables = set(raw) - {"matrix", "scoring", "models"}
    if unknown_tables:
        raise MatrixError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; valid: matrix, scoring, models"
        )
    try:
        spec = build_config(MatrixSection, _table(raw, "matrix", path), where=f"{path}: [matrix]")
        scoring = build_config(
            ScoringSection, _table(raw, "scoring", path), where=f"{path}: [scoring]"
        )
        models = tuple(
            build_config(ModelSection, m, where=f"{path}: models[{i}]")
            for i, m in enumerate(_model_tables(raw, path))
        )
    except ConfigError as err:
        raise MatrixError(str(err)) from None
    for ds in spec.datasets:
        _check_dataset(path, ds)
    for where, names in [("[matrix] tasks", spec.tasks)] + [
        (f"models[{i}] ({m.name}) tasks", m.tasks or ()) for i, m in enumerate(models)
    ]:
        for name in names:
            try:
                tasks_module().task_class(name)
            except registry.UnknownNameError as err:
                raise MatrixError(f"{path}: {where}: {err}") from None
    for device in spec.devices:
        _check_device_available(path, device)
    seen_labels: dict[str, int] = {}
    seen_identity: dict[str, int] = {}
    for i, m in enumerate(models):
        where = f"{path}: models[{i}] ({m.name})"
        try:
            klass = registry.model_class(m.name)
            merged = registry.resolved_config(m.name, m.config)
            build_config(klass.Config, merged, where=f"{where}.config")
            build_config(Budget, m.budget, where=f"{where}.budget")
        except (registry.UnknownNameError, registry.ModelImportError) as err:
            raise MatrixError(f"{where}: {err}") from None
        except ConfigError as err:
            raise MatrixError(str(err)) from None
        extra = set(m.datasets or ()) - set(spec.datasets)
        if extra:
            raise MatrixError(f"{where}: datasets {sorted(extra)} are not in [matrix] datasets")
        label = m.label or m.name
        if label in seen_labels:
            raise MatrixError(
                f"{where}: label {label!r} is also models[{seen_labels[label]}]'s; give each "
                "model its own label"
            )
        seen_labels[label] = i
        same = repr((m.name, sorted(merged.items()), sorted(m.budget.items()), m.datasets,
                     m.threads, m.fractions))
        if same in seen_identity:
            raise MatrixError(
                f"{where}: the same model, config and budget as models[{seen_identity[same]}]; "
                "every cell would be run twice"
            )
        seen_identity[same] = i
        runs_on = klass.devices_for(merged)
        for device in spec.devices:
            kind = device.split(":")[0]
            if kind != "auto" and kind not in runs_on:
                raise MatrixError(
                    f"{where}: runs on {', '.join(runs_on)}, not {device!r}; "
                    "use devices = [\"auto\"] or leave this model out"
                )
    return Matrix(path.stem, path, spec, scoring, models)


def _check_dataset(path: Path, ds: str) -> None:
    for prefix in ("text:", "chars:"):
        if ds.startswith(prefix):
            target = Path(ds[len(prefix):]).expanduser()
            if not ds[len(prefix):] or not target.exists():
                raise MatrixError(
                    f"{path}: [matrix] datasets: {ds!r}: no such file or folder {str(target)!r}"
                )
            missing = [f"{s}.txt" for s in SPLITS if not (target / f"{s}.txt").is_file()]
            if target.is_dir() and missing:
                raise MatrixError(
                    f"{path}: [matrix] datasets: {ds!r}: a corpus folder needs train.txt, "
                    f"valid.txt and test.txt; {target} has no {', '.join(missing)}"
                )
            return
    if ds not in DATASETS:
        raise MatrixError(
            f"{path}: [matrix] datasets: "
            + str(registry.unknown("dataset", ds, [*DATASETS, "text:PATH", "chars:PATH"]))
        )


def _check_device_available(path: Path, device: str) -> None:
    kind = device.split(":")[0]
    if kind in ("auto", "cpu"):
        return
    try:
        import torch
    except ImportError:
        raise MatrixError(f"{path}: [matrix] devices: {device!r} needs torch, which is not "
                          "installed") from None
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise MatrixError(
                f"{path}: [matrix] devices: {device!r} is not available (this machine has "
                f"{have}); use \"auto\" or \"cpu\""
            )
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise MatrixError(
            f"{path}: [matrix] devices: 'mps' is not available on this machine; use \"auto\" "
            "or \"cpu\""
        )


def cells(matrix: Matrix, only: set[str] | None = None) -> Iterator[Cell]:
    for m in matrix.models:
        if only and m.name not in only and (m.label or m.name) not in only:
            continue
        for ds in m.datasets or matrix.spec.datasets:
            for fraction in m.fractions or matrix.spec.fractions:
                for seed in matrix.spec.seeds:
                    for device in matrix.spec.devices:
                        yield Cell(m, ds, seed, device, fraction)


def select_cells(matrix: Matrix, only: set[str] | None = None) -> list[Cell]:
    """The cells to run; ``only`` names models (registry names or labels) to keep."""
    todo = list(cells(matrix, only))
    if only and not todo:
        labels = ", ".join(m.label or m.name for m in matrix.models)
        raise MatrixError(f"{matrix.path}: no model matches {sorted(only)}; its models: {labels}")
    return todo


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
        _check_limits(self.threads, self.time_limit, self.memory_limit_mib)
        s = self.max_seconds
        if s is not None and not (math.isfinite(s) and s > 0):
            raise ValueError(f"max_seconds must be a positive number of seconds, got {s}")


def tasks_module():
    """:mod:`lmladder.tasks`, imported when a matrix names tasks (it pulls in sacrebleu)."""
    from lmladder import tasks

    return tasks


def cell_tasks(matrix: Matrix, cell: Cell) -> list[str]:
    return list(cell.model.tasks if cell.model.tasks is not None else matrix.spec.tasks)


def scaled_budget(budget: dict, fraction: float) -> dict:
    """A budget for ``fraction`` of the training data: every limit scaled in proportion (counts
    rounded, at least 1), so each point of a learning curve gets the same budget per token."""
    if fraction == 1:
        return dict(budget)
    out = {}
    for key, value in budget.items():
        out[key] = max(1, round(value * fraction)) if key in ("tokens", "steps") \
            else value * fraction
    return out


def cell_budget(cell: Cell, limits: Limits = Limits()) -> dict:
    """The cell's budget before scaling by its fraction, with the run's ``max_seconds`` cap (a
    cap is part of the budget, hence of the cell's key and record)."""
    budget = dict(cell.model.budget)
    cap = limits.max_seconds
    if cap is not None and budget.get("seconds", math.inf) > cap:
        budget["seconds"] = int(cap) if float(cap).is_integer() else cap
    return budget


def cell_threads(matrix: Matrix, cell: Cell, limits: Limits = Limits()) -> int:
    chosen = limits.threads or cell.model.threads or matrix.spec.threads
    return auto_threads() if chosen == "auto" else int(chosen)


def cell_time_limit(matrix: Matrix, cell: Cell, limits: Limits = Limits()) -> float:
    chosen = limits.time_limit or cell.model.time_limit or matrix.spec.time_limit
    if chosen is not None:
        return float(chosen)
    seconds = cell_budget(cell, limits).get("seconds")
    return max(DEFAULT_TIME_LIMIT, 2 * seconds + 600) if seconds else DEFAULT_TIME_LIMIT


def cell_resources(matrix: Matrix, cell: Cell, desc: dict) -> Resources:
    """What the cell asks a cluster for: the model's ``resources``, else the matrix's, key by
    key; by default as many CPUs as the cell's torch threads and one GPU when its device (as
    resolved in ``desc``, see :func:`describe_cell`) is CUDA."""
    given = {**matrix.spec.resources, **cell.model.resources}
    return Resources(
        cpus=float(given.get("cpus", desc["threads"])),
        gpus=float(given.get("gpus", 1 if desc["device"].startswith("cuda") else 0)),
    )


def describe_cell(matrix: Matrix, cell: Cell, limits: Limits = Limits()) -> tuple[dict, str]:
    """The cell as recorded (device and threads resolved) and its key: a hash of what
    determines its numbers -- everything but its label and matrix name -- and the code
    version."""
    klass = registry.model_class(cell.model.name)
    runs_on = klass.devices_for(registry.resolved_config(cell.model.name, cell.model.config))
    device = resolve_device(cell.device, runs_on)
    config = {**registry.entry(cell.model.name).defaults, **cell.model.config}
    desc = {
        "matrix": matrix.name,
        "model": cell.model.name,
        "label": cell.label,
        "config": config,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "device": device,
        "budget": cell_budget(cell, limits),
        "scoring": dataclasses.asdict(matrix.scoring),
        "threads": cell_threads(matrix, cell, limits),
        "fraction": cell.fraction,
        "tasks": cell_tasks(matrix, cell),
    }
    code = {"lmladder": __version__, "model_revision": klass.revision, "results_api": API_VERSION}
    keyed = {k: v for k, v in desc.items() if k not in ("label", "matrix")}
    return desc, cell_key(keyed, code)


@dataclass(frozen=True)
class Phase:
    """A cell's progress outside training: it starts ``name`` ("fit", "scoring test",
    "task cloze", ...), step ``step`` (from 0) of the cell's ``steps``.

    Sent through the same callback as the fit's :class:`~lmladder.api.Progress` events (for an
    isolated cell, the same pipe), so the command line can say what a cell is doing during the
    minutes a big cell spends scoring and running tasks."""

    name: str
    step: int
    steps: int


# The callback of a cell receives the fit's Progress events and the cell's Phase events.
FitCallbackFactory = Callable[[str], Callable[[Progress | Phase], None] | None]


def run_cell(
    matrix: Matrix,
    cell: Cell,
    *,
    data_dir=None,
    fit_callback: Callable[[Progress], None] | None = None,
    described: tuple[dict, str] | None = None,
    limits: Limits = Limits(),
    isolated: bool = True,
    save_model_to: Path | None = None,
) -> dict:
    """Fit, score, time and describe one cell; returns the result record.  A model or data
    failure, a crash of the cell's process or its time limit is recorded, never raised;
    KeyboardInterrupt goes through.  ``isolated=False`` runs the cell in this process (for
    debugging: no time or memory limit, a crash ends the run).  ``save_model_to`` keeps the
    fitted model of an ok cell in that folder (see the module docstring)."""
    record = _start_record(matrix, cell, described, limits, isolated)
    try:
        data = load_dataset(cell.dataset, data_dir)
    except DataNotFoundError as err:
        return _error(record, "skipped", type(err).__name__, str(err))
    except (DataError, OSError, ValueError) as err:  # a corpus that is there but unusable
        return _error(record, "failed", type(err).__name__, f"dataset {cell.dataset!r}: {err}")
    if save_model_to is not None and not save_model_to.parent.is_dir():
        return _error(record, "failed", "ResultsError", (
            f"{save_model_to.parent}: no such folder on {platform.node()}; a cell saves its model "
            "from its own process, so the results folder must be one every machine shares"))
    args = (record, matrix, cell, data, data_dir, save_model_to)
    if not isolated:
        return _compute(None, *args, fit_callback)
    outcome = isolate.run_in_child(
        _compute,
        (*args, None),
        time_limit=record["limits"]["time_limit_s"],
        memory_limit_mib=record["limits"]["memory_limit_mib"],
        on_message=fit_callback,
    )
    if outcome.error is not None:
        if save_model_to is not None:  # the killed child could not clean up after itself
            shutil.rmtree(partial_model_folder(save_model_to), ignore_errors=True)
        return _error(record, "failed", *outcome.error)
    return outcome.value


def failed_record(matrix: Matrix, cell: Cell, kind: str, message: str, *,
                  described: tuple[dict, str] | None = None, limits: Limits = Limits(),
                  isolated: bool = True) -> dict:
    """The record of a cell that failed outside :func:`run_cell` (its Ray worker died, ...):
    ``kind`` is the error's type, ``message`` one line."""
    return _error(_start_record(matrix, cell, described, limits, isolated), "failed", kind,
                  message)


def _start_record(matrix, cell, described, limits, isolated) -> dict:
    desc, key = described or describe_cell(matrix, cell, limits)
    record = _new_record(desc, key)
    record["limits"] = {
        "time_limit_s": cell_time_limit(matrix, cell, limits) if isolated else None,
        "memory_limit_mib": (limits.memory_limit_mib or matrix.spec.memory_limit_mib)
        if isolated else None,
        "isolated": isolated,
    }
    return record


def _new_record(desc: dict, key: str) -> dict[str, Any]:
    return {
        "api_version": API_VERSION,
        "key": key,
        "status": "ok",
        "error": None,
        "cell": desc,
        "provenance": provenance(),
    }


def _error(record: dict, status: str, kind: str, message: str, tb: str | None = None) -> dict:
    record.update(status=status, error={"type": kind, "message": message, "traceback": tb})
    return record


def _compute(send, record, matrix, cell, data, data_dir, save_model_to, fit_callback) -> dict:
    """The work of one cell (in its child process when ``send`` is given)."""
    callback = send or fit_callback
    threads = record["cell"]["threads"]
    saved = _set_threads(threads)
    try:
        _fill(record, cell, data, data_dir, matrix, callback, threads, save_model_to)
    except MemoryError:
        _error(record, "failed", "MemoryError",
               isolate.memory_error_message(record["limits"]["memory_limit_mib"]))
    except Exception as err:  # noqa: BLE001 -- a failing cell is data, the run goes on
        _error(record, "failed", type(err).__name__, str(err), traceback.format_exc())
    finally:
        if send is None:
            _set_threads(saved)
        if save_model_to is not None:  # what is left of a failed cell's save
            shutil.rmtree(partial_model_folder(save_model_to), ignore_errors=True)
    return record


def _set_threads(n: int | None) -> int | None:
    """Set torch's intra-op threads if torch is loaded (by the model's family); returns the old
    count.  numpy-only families never import torch for this."""
    torch = sys.modules.get("torch")
    if torch is None or n is None:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    return old


def _fill(record, cell, data, data_dir, matrix, fit_callback, threads, save_model_to) -> None:
    device = record["cell"]["device"]
    overrides = dict(cell.model.config)
    klass = registry.model_class(cell.model.name)
    if "seed" in {f.name for f in dataclasses.fields(klass.Config)}:
        overrides["seed"] = cell.seed
    model = registry.build(cell.model.name, overrides).to(device)
    _set_threads(threads)  # building the model may have imported torch just now
    budget = build_config(Budget, scaled_budget(record["cell"]["budget"], cell.fraction),
                          where="budget")
    data = data.with_train_fraction(cell.fraction)
    policy = matrix.scoring.policy()
    record["dataset"] = data.summary()
    record["budget_used"] = dataclasses.asdict(budget)
    record["protocol"] = {
        **policy.to_dict(),
        "accuracy_tokens": matrix.scoring.accuracy_tokens,
        "first_context": f"one boundary token {data.vocab.boundary!r}",
        "token": "word + one <eos> per line" if data.level == "word" else "character",
        "unk": data.vocab.unk,
    }
    # the cell's steps, announced as each starts (the fit also reports its own progress)
    steps = ["fit", *(f"scoring {s.name}" for s in (data.valid, data.test)), "top-k accuracy"]
    steps += ["pseudo-perplexity"] if supports_pseudo_logprobs(model) else []
    steps += ["generating"] if model.closed_vocabulary else []
    steps += [f"task {name}" for name in record["cell"]["tasks"]]

    def phase(name: str) -> None:
        if fit_callback is not None:
            fit_callback(Phase(name, steps.index(name), len(steps)))

    np.random.seed(cell.seed)
    rss_start = timing.rss_mib()
    timing.reset_peak_rss()
    timing.reset_device_peak(device)

    phase("fit")
    t0 = time.perf_counter()
    report = model.fit(
        data.train.ids, data.vocab, budget=budget, valid=data.valid.ids, callback=fit_callback
    )
    timing.synchronize(device)
    fit_s = time.perf_counter() - t0
    train_s = fit_s - report.valid_seconds

    metrics, times = {}, {"fit_s": fit_s, "valid_in_fit_s": report.valid_seconds}
    for split in (data.valid, data.test):
        phase(f"scoring {split.name}")
        t0 = time.perf_counter()
        m, _ = score_split(model, split, data.vocab, policy=policy, name=cell.label)
        timing.synchronize(device)
        times[f"score_{split.name}_s"] = time.perf_counter() - t0
        metrics[split.name] = m.to_dict()
    phase("top-k accuracy")
    metrics["test_accuracy"] = score_accuracy(
        model, data.test, policy=policy, max_tokens=matrix.scoring.accuracy_tokens
    )
    if "pseudo-perplexity" in steps:
        phase("pseudo-perplexity")
    metrics["test_pseudo"] = pseudo_perplexity(  # masked LMs only; not comparable with ppl
        model, data.test, data.vocab, policy=policy, name=cell.label,
        max_tokens=matrix.scoring.accuracy_tokens,
    )

    sample, gen_tps = None, None
    if model.closed_vocabulary:
        phase("generating")
        t0 = time.perf_counter()
        ids = model.generate(data.test.ids[:0], GENERATE_TOKENS, seed=cell.seed)
        times["generate_s"] = time.perf_counter() - t0
        gen_tps = GENERATE_TOKENS / times["generate_s"]
        sample = data.vocab.detokenize(ids)

    record.update(
        model={
            "class": f"{klass.__module__}:{klass.__qualname__}",
            "revision": klass.revision,
            "family": model.family,  # the instance's: a wrapper reports what it wraps
            "parameters": int(model.num_parameters()),
        },
        metrics=metrics,
        oracle=_oracle(data),
        throughput={
            "train_tokens_per_s": report.train_tokens / train_s if train_s > 0 else None,
            "score_tokens_per_s": data.test.num_tokens / times["score_test_s"],
            "generate_tokens_per_s": gen_tps,
        },
        timing=times,
        memory={
            "rss_start_mib": rss_start,
            "rss_peak_mib": timing.peak_rss_mib(),
            "device_peak_mib": timing.device_peak_mib(device),
        },
        fit=dataclasses.asdict(report),
        inspect=model.inspect(),
        sample=sample,
    )
    if save_model_to is None:
        record["model"]["disk_bytes"] = _disk_bytes(model)
    else:  # saved before the tasks, published after them: only an ok cell's model is kept
        partial = model.save(_fresh(partial_model_folder(save_model_to)))
        record["model"]["disk_bytes"] = folder_bytes(partial)
    record["tasks"] = {}
    for name in record["cell"]["tasks"]:
        phase(f"task {name}")
        record["tasks"][name] = _run_task(name, model, data, budget, data_dir, cell, overrides,
                                          device)
    if save_model_to is not None:
        _publish(partial, save_model_to)
        record["saved_model"] = save_model_to.name


MODEL_SUFFIX = ".model"
PARTIAL = ".partial-"  # a model folder being written; never a record, never in a report


def model_folder(record_file: Path) -> Path:
    """Where ``save_models`` keeps the model of the record in ``record_file``."""
    return record_file.with_name(record_file.stem + MODEL_SUFFIX)


def partial_model_folder(folder: Path) -> Path:
    """The hidden folder a cell writes its model into before renaming it to ``folder``."""
    return folder.with_name(PARTIAL + folder.name)


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (their sizes, not the blocks they fill)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _disk_bytes(model) -> int:
    """The size of ``model`` saved with the contract's ``save``, in a folder thrown away after."""
    with tempfile.TemporaryDirectory(prefix="lmladder-model-") as tmp:
        return folder_bytes(model.save(tmp))


def _fresh(folder: Path) -> Path:
    """``folder``, emptied of what a killed earlier attempt left (only the holder of the cell's
    lock writes it, so nobody else is writing there)."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _publish(partial: Path, folder: Path) -> None:
    """Rename the finished ``partial`` folder to ``folder``, replacing an older model (a forced
    rerun); readers see the old folder or the new one, never half of one."""
    old = partial.with_name(partial.name + ".old")
    if folder.exists():
        os.replace(folder, _fresh(old))
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)


def cell_lock(results_dir: Path, stem: str) -> isolate.CellLock:
    """The lock of the cell whose record file is ``<stem>.json`` in ``results_dir``."""
    return isolate.CellLock(results_dir / ".locks" / f"{stem}.lock")


def _remove_stale_models(results_dir: Path) -> None:
    """Remove the partial model folders of cells whose lock nobody holds (a run killed while
    saving), or put back a model a killed rerun had moved aside."""
    for partial in results_dir.glob(f"{PARTIAL}*{MODEL_SUFFIX}*"):
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


def _run_task(name, model, data, budget, data_dir, cell, overrides, device) -> dict:
    """One task's scores for the cell's fitted model; a task that cannot use the model is "not
    applicable", one that breaks is "failed" with its error (the cell's own metrics stand)."""
    tasks = tasks_module()
    subject = tasks.Subject(
        model, data, budget, None if data_dir is None else str(data_dir),
        fresh=lambda: registry.build(cell.model.name, overrides).to(device),
    )
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **tasks.task_class(name)().evaluate(subject, seed=cell.seed)}
    except tasks.NotApplicable as why:
        result = {"status": "not applicable", "reason": str(why)}
    except (DataNotFoundError, DataError) as err:
        result = {"status": "skipped" if isinstance(err, DataNotFoundError) else "failed",
                  "error": {"type": type(err).__name__, "message": str(err)}}
    except Exception as err:  # noqa: BLE001 -- one broken task must not lose the cell
        result = {"status": "failed", "error": {"type": type(err).__name__, "message": str(err),
                                                "traceback": traceback.format_exc()}}
    result["seconds"] = time.perf_counter() - t0
    return result


def _oracle(data) -> dict | None:
    if data.test.oracle_logprobs is None:
        return None
    return {
        s.name: metrics_from_logprobs(s.oracle_logprobs, s).to_dict()
        for s in (data.valid, data.test)
    }


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
    try:
        (results_dir / ".locks").mkdir(parents=True, exist_ok=True)
    except OSError as err:
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
    on_cell_start: Callable[[Cell, int, int], None] | None = None,
    on_cell_end: Callable[[Cell, dict], None] | None = None,
    on_wait: Callable[[Cell], None] | None = None,
    on_cell_placed: Callable[[Cell, str, int], None] | None = None,
    fit_callback_factory: FitCallbackFactory | None = None,
) -> RunSummary:
    """Run every cell not already done; each finished cell's record is on disk immediately.

    Each cell is claimed with a lock first: a cell another run is computing is left to it and
    waited for at the end (and run here if that run died without a record).  ``executor="ray"``
    computes the cells as tasks of the Ray cluster at ``address`` (None: a Ray instance of this
    machine's CPUs; see :mod:`lmladder.ray_executor`), telling ``on_cell_placed(cell, node,
    attempt)`` as a cell starts on a node; the fit callbacks are local runs' only.
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ExecutorError(f"address {address!r} names a Ray cluster; use it with executor 'ray'")
    todo = select_cells(matrix, only)
    runner = Runner(matrix, prepare_results_dir(results_dir), force=force, limits=limits,
                    save_models=save_models, on_cell_end=on_cell_end)
    if executor in REMOTE_EXECUTORS:
        run_cells = registry.import_target(REMOTE_EXECUTORS[executor])
        run_cells(runner, todo, address=address, data_dir=data_dir, isolated=isolated,
                  on_cell_start=on_cell_start, on_wait=on_wait, on_cell_placed=on_cell_placed)
        return runner.summary
    busy: list[tuple[int, Cell]] = []
    for i, cell in enumerate(todo):
        claim = runner.claim(cell, i, len(todo), block=False)
        if claim is BUSY:
            busy.append((i, cell))
        elif claim is not DONE:
            _compute_here(runner, claim, data_dir, isolated, on_cell_start, fit_callback_factory)
    for i, cell in busy:
        if on_wait:
            on_wait(cell)
        claim = runner.claim(cell, i, len(todo), block=True, force=False)
        if claim is not DONE:
            _compute_here(runner, claim, data_dir, isolated, on_cell_start, fit_callback_factory)
    return runner.summary


def _compute_here(runner, claim, data_dir, isolated, on_cell_start, fit_callback_factory) -> None:
    """The local executor: compute the claimed cell on this machine, then write its record."""
    try:
        if on_cell_start:
            on_cell_start(claim.cell, claim.index, claim.of)
        cb = fit_callback_factory(claim.cell.label) if fit_callback_factory else None
        record = run_cell(runner.matrix, claim.cell, data_dir=data_dir, fit_callback=cb,
                          described=(claim.desc, claim.key), limits=runner.limits,
                          isolated=isolated, save_model_to=claim.save_model_to)
    except BaseException:
        claim.lock.release()
        raise
    runner.finish(claim, record)


DONE = "done"  # Runner.claim: the cell has an ok record (or another run just wrote one)
BUSY = "busy"  # Runner.claim: another run holds the cell's lock


@dataclass
class Claim:
    """A cell whose lock this run holds: its record goes to ``path``."""

    cell: Cell
    index: int  # the cell's place among the ``of`` cells of the run
    of: int
    desc: dict
    key: str
    path: Path
    lock: isolate.CellLock
    latest: dict | None  # the record on disk when claimed: an ok one outlives a failed rerun
    save_model_to: Path | None


@dataclass
class Runner:
    """The driver's side of a run, whatever computes its cells: claims cells (:meth:`claim`),
    writes their records (:meth:`finish`) and keeps the :class:`RunSummary`."""

    matrix: Matrix
    results_dir: Path
    force: bool = False
    limits: Limits = Limits()
    save_models: bool = False
    on_cell_end: Callable[[Cell, dict], None] | None = None
    summary: RunSummary = field(default_factory=RunSummary)

    def claim(self, cell: Cell, index: int, of: int, *, block: bool,
              force: bool | None = None) -> Claim | str:
        """Lock ``cell`` for this run: a :class:`Claim`, or :data:`DONE` when its ok record
        exists and is not to be rerun (``force`` defaults to the run's), or :data:`BUSY` when
        another run holds its lock and ``block`` is false."""
        force = self.force if force is None else force
        desc, key = describe_cell(self.matrix, cell, self.limits)
        path = record_path(self.results_dir, desc, key)
        before = self._existing(path)
        if not force and before is not None and before["status"] == "ok":
            return self._done(path)
        lock = cell_lock(self.results_dir, path.stem)
        if not lock.acquire(block=block):
            return BUSY
        latest = self._existing(path)
        if latest is not None and latest["status"] == "ok" and (
            not force or latest.get("provenance") != (before or {}).get("provenance")
        ):  # another run finished it while we waited for the lock
            lock.release()
            return self._done(path)
        return Claim(cell, index, of, desc, key, path, lock, latest,
                     model_folder(path) if self.save_models else None)

    def finish(self, claim: Claim, record: dict) -> None:
        """Write the claimed cell's record (beside an ok one that a failed rerun must not
        replace), release its lock and count it in the summary."""
        cell, desc, path = claim.cell, claim.desc, claim.path
        share = "" if cell.fraction == 1 else f", {cell.fraction:g} of train"
        what = f"{cell.label} on {cell.dataset} (seed {cell.seed}, {desc['device']}{share})"
        try:
            if claim.latest is not None and claim.latest["status"] == "ok" \
                    and record["status"] != "ok":
                stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                attempt = path.with_name(f"{path.stem}.{record['status']}-{stamp}.json")
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
            self.on_cell_end(cell, record)

    def _count(self, what: str, record: dict) -> None:
        summary = self.summary
        for task, result in (record.get("tasks") or {}).items():
            if result.get("status") == "failed":
                summary.failed.append(f"{what}: task {task}: {result['error']['type']}: "
                                      f"{result['error']['message']}")
            elif result.get("status") == "skipped":
                summary.skipped.append(f"{what}: task {task}: {result['error']['message']}")
        if record["status"] == "ok":
            summary.done += 1
        elif record["status"] == "skipped":
            summary.skipped.append(f"{what}: {record['error']['message']}")
        else:
            summary.failed.append(
                f"{what}: {record['error']['type']}: {record['error']['message']}")

    def _done(self, path: Path) -> str:
        self.summary.skipped_existing += 1
        self.summary.paths.append(path)
        return DONE

    def _existing(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        try:
            return read_record(path)
        except RecordError as err:
            self.summary.notes.append(f"{err}; the cell is run again")
            return None
