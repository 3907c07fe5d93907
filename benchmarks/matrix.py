"""Matrix files: TOML files of models x datasets x seeds x devices, loaded and checked.

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

Every mistake in a matrix is found when it is loaded (:func:`load_matrix`), before any cell
runs; the message names the file and the key.  ``expected_time`` is read, with the rest of
``[matrix]`` and nothing else, by :func:`read_matrix_section`, so ``lmladder list matrices``
imports no model.  A :class:`Cell` is one point of the matrix (a model section, dataset, seed,
device as requested and share of the training data); :mod:`lmladder.plan` resolves it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmladder import registry
from lmladder.api import Budget, ConfigError, ContextPolicy, build_config
from lmladder.corpus import SPLITS
from lmladder.data import DATASETS
from lmladder.results import confusable, irregular

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MATRIX_DIR = Path(__file__).parent / "matrices"
MAX_SEED = 2**32 - 1  # numpy's seeds
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class MatrixError(ValueError):
    """A matrix file is malformed; the message names the file and the key or line."""


Threads = int | Literal["auto"]


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
                raise ValueError(f"seeds: seed {seed} is outside 0 .. {MAX_SEED}; give seeds in "
                                 "that range")
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
        raise ValueError(f"memory_limit_mib must be from 64 to {2**40} (MiB), got "
                         f"{memory_limit_mib}")


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
    if irregular(path):
        raise MatrixError(f"{path}: {irregular(path)}; give a matrix file (.toml)")
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
    except RecursionError:
        raise MatrixError(f"{path}: malformed TOML: arrays or tables nested too deeply") from None


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
        for other, j in seen_labels.items():
            if confusable(label, other):
                raise MatrixError(
                    f"{where}: label {label!r} looks like models[{j}]'s {other!r} (characters "
                    f"that look alike: {ascii(label)} vs {ascii(other)}); rename one")
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
            for split in [target] + [target / f"{s}.txt" for s in SPLITS] * target.is_dir():
                if irregular(split):
                    raise MatrixError(f"{path}: [matrix] datasets: {ds!r}: {split} is "
                                      f"{irregular(split)}; give a text file or folder")
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


def tasks_module():
    """:mod:`lmladder.tasks`, imported when a matrix names tasks (it pulls in sacrebleu)."""
    from lmladder import tasks

    return tasks
