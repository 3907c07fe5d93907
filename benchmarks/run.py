"""Matrices: TOML files of models x datasets x seeds x devices, and the runner that fills them.

A matrix file::

    [matrix]
    description = "..."
    datasets = ["synthetic", "ptb"]
    seeds = [0]
    devices = ["auto"]          # "cpu", "cuda", "mps" or "auto" (the best the model supports)

    [scoring]                   # lmladder.api.ContextPolicy + accuracy_tokens
    reset_at_boundary = false
    accuracy_tokens = 5000

    [[models]]
    name = "kn5"                # a registry entry (lmladder list models)
    label = "KN5"               # optional, defaults to name
    config = { order = 5 }      # optional overrides of the entry's hyperparameters
    budget = { seconds = 60 }   # optional: tokens, steps, seconds
    datasets = ["ptb"]          # optional: only these of the matrix's datasets

Every cell is fitted, scored on valid and test, timed and written as one JSON record (see
:mod:`lmladder.results`).  A cell whose record exists with status ``ok`` is skipped unless
``force``; failures are recorded and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import registry, timing
from lmladder._version import __version__
from lmladder.api import Budget, ConfigError, ContextPolicy, Progress, build_config
from lmladder.data import DATASETS, DataNotFoundError, load_dataset
from lmladder.results import (
    API_VERSION,
    cell_key,
    provenance,
    read_record,
    record_path,
    write_record,
)
from lmladder.scoring import metrics_from_logprobs, score_accuracy, score_split

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

MATRIX_DIR = Path(__file__).parent / "matrices"
GENERATE_TOKENS = 100


class MatrixError(ValueError):
    """A matrix file is malformed; the message names the file and the key or line."""


@dataclass(frozen=True)
class MatrixSection:
    description: str = ""
    datasets: tuple[str, ...] = ("synthetic",)
    seeds: tuple[int, ...] = (0,)
    devices: tuple[str, ...] = ("auto",)


@dataclass(frozen=True)
class ScoringSection:
    reset_at_boundary: bool = False
    window: int | None = None
    stride: int | None = None
    accuracy_tokens: int | None = 5000

    def policy(self) -> ContextPolicy:
        return ContextPolicy(self.reset_at_boundary, self.window, self.stride)


@dataclass(frozen=True)
class ModelSection:
    name: str
    label: str | None = None
    config: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None


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

    @property
    def label(self) -> str:
        return self.model.label or self.model.name


def resolve_matrix(name_or_path: str) -> Path:
    """A path, or the name of a file in ``benchmarks/matrices`` (with or without ``.toml``)."""
    path = Path(name_or_path)
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


def load_matrix(name_or_path: str) -> Matrix:
    """Parse and validate a matrix file: unknown keys, models, datasets and configs are errors."""
    path = resolve_matrix(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise MatrixError(f"{path}: malformed TOML: {err}") from None
    unknown_tables = set(raw) - {"matrix", "scoring", "models"}
    if unknown_tables:
        raise MatrixError(
            f"{path}: unknown table(s) {sorted(unknown_tables)}; valid: matrix, scoring, models"
        )
    try:
        spec = build_config(MatrixSection, raw.get("matrix", {}), where=f"{path}: [matrix]")
        scoring = build_config(ScoringSection, raw.get("scoring", {}), where=f"{path}: [scoring]")
        try:
            scoring.policy()
        except ConfigError as err:
            raise ConfigError(f"{path}: [scoring]: {err}") from None
        models = tuple(
            build_config(ModelSection, m, where=f"{path}: models[{i}]")
            for i, m in enumerate(raw.get("models", []))
        )
    except ConfigError as err:
        raise MatrixError(str(err)) from None
    if not models:
        raise MatrixError(f"{path}: no [[models]] entries")
    for ds in spec.datasets:
        if not (ds.startswith(("text:", "chars:")) or ds in _dataset_names()):
            raise MatrixError(
                f"{path}: [matrix] datasets: "
                + str(registry.unknown("dataset", ds, _dataset_names()))
            )
    for i, m in enumerate(models):
        where = f"{path}: models[{i}] ({m.name})"
        try:
            klass = registry.model_class(m.name)
            merged = registry.resolved_config(m.name, m.config)
            build_config(klass.Config, merged, where=f"{where}.config")
            build_config(Budget, m.budget, where=f"{where}.budget")
        except registry.UnknownNameError as err:
            raise MatrixError(f"{where}: {err}") from None
        except ConfigError as err:
            raise MatrixError(str(err)) from None
        extra = set(m.datasets or ()) - set(spec.datasets)
        if extra:
            raise MatrixError(f"{where}: datasets {sorted(extra)} are not in [matrix] datasets")
    return Matrix(path.stem, path, spec, scoring, models)


def _dataset_names() -> list[str]:
    return list(DATASETS)


def cells(matrix: Matrix, only: set[str] | None = None) -> Iterator[Cell]:
    for m in matrix.models:
        if only and m.name not in only and (m.label or m.name) not in only:
            continue
        for ds in m.datasets or matrix.spec.datasets:
            for seed in matrix.spec.seeds:
                for device in matrix.spec.devices:
                    yield Cell(m, ds, seed, device)


def resolve_device(requested: str, supported: tuple[str, ...]) -> str:
    """``auto`` picks CUDA, then MPS, then CPU among what the model supports and the machine has."""
    if requested != "auto":
        return requested
    if "cuda" in supported or "mps" in supported:
        import torch

        if "cuda" in supported and torch.cuda.is_available():
            return "cuda"
        if "mps" in supported and torch.backends.mps.is_available():
            return "mps"
    return "cpu"


def describe_cell(matrix: Matrix, cell: Cell) -> tuple[dict, str]:
    """The cell as recorded (device resolved) and its key: a hash of that and the code version."""
    klass = registry.model_class(cell.model.name)
    device = resolve_device(cell.device, klass.devices)
    config = {**registry.entry(cell.model.name).defaults, **cell.model.config}
    desc = {
        "matrix": matrix.name,
        "model": cell.model.name,
        "label": cell.label,
        "config": config,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "device": device,
        "budget": cell.model.budget,
        "scoring": dataclasses.asdict(matrix.scoring),
    }
    code = {"lmladder": __version__, "model_revision": klass.revision, "results_api": API_VERSION}
    return desc, cell_key(desc, code)


FitCallbackFactory = Callable[[str], Callable[[Progress], None] | None]


def run_cell(
    matrix: Matrix,
    cell: Cell,
    *,
    data_dir=None,
    fit_callback: Callable[[Progress], None] | None = None,
    described: tuple[dict, str] | None = None,
) -> dict:
    """Fit, score, time and describe one cell; returns the result record (never raises for a
    model or data failure -- those are recorded -- but lets KeyboardInterrupt through).
    ``described`` is :func:`describe_cell`'s answer when the caller has it already."""
    desc, key = described or describe_cell(matrix, cell)
    device = desc["device"]
    record: dict[str, Any] = {
        "api_version": API_VERSION,
        "key": key,
        "status": "ok",
        "error": None,
        "cell": desc,
        "provenance": provenance(),
    }
    try:
        data = load_dataset(cell.dataset, data_dir)
    except DataNotFoundError as err:
        record.update(status="skipped", error={"type": type(err).__name__, "message": str(err)})
        return record
    try:
        _fill(record, cell, data, device, matrix, fit_callback)
    except Exception as err:  # noqa: BLE001 -- a failing cell is data, the run goes on
        record.update(
            status="failed",
            error={
                "type": type(err).__name__,
                "message": str(err),
                "traceback": traceback.format_exc(),
            },
        )
    return record


def _fill(record, cell, data, device, matrix, fit_callback) -> None:
    overrides = dict(cell.model.config)
    klass = registry.model_class(cell.model.name)
    if "seed" in {f.name for f in dataclasses.fields(klass.Config)}:
        overrides["seed"] = cell.seed
    model = registry.build(cell.model.name, overrides).to(device)
    budget = build_config(Budget, cell.model.budget, where="budget")
    policy = matrix.scoring.policy()
    record["dataset"] = data.summary()
    record["protocol"] = {
        **policy.to_dict(),
        "accuracy_tokens": matrix.scoring.accuracy_tokens,
        "first_context": f"one boundary token {data.vocab.boundary!r}",
        "token": "word + one <eos> per line" if data.level == "word" else "character",
        "unk": data.vocab.unk,
    }
    np.random.seed(cell.seed)
    rss_start = timing.rss_mib()
    timing.reset_peak_rss()
    timing.reset_device_peak(device)

    t0 = time.perf_counter()
    report = model.fit(
        data.train.ids, data.vocab, budget=budget, valid=data.valid.ids, callback=fit_callback
    )
    timing.synchronize(device)
    fit_s = time.perf_counter() - t0

    metrics, times = {}, {"fit_s": fit_s}
    for split in (data.valid, data.test):
        t0 = time.perf_counter()
        m, _ = score_split(model, split, data.vocab, policy=policy, name=cell.label)
        timing.synchronize(device)
        times[f"score_{split.name}_s"] = time.perf_counter() - t0
        metrics[split.name] = m.to_dict()
    metrics["test_accuracy"] = score_accuracy(
        model, data.test, policy=policy, max_tokens=matrix.scoring.accuracy_tokens
    )

    sample, gen_tps = None, None
    if model.closed_vocabulary:
        t0 = time.perf_counter()
        ids = model.generate(data.test.ids[:0], GENERATE_TOKENS, seed=cell.seed)
        times["generate_s"] = time.perf_counter() - t0
        gen_tps = GENERATE_TOKENS / times["generate_s"]
        sample = data.vocab.detokenize(ids)

    record.update(
        model={
            "class": f"{klass.__module__}:{klass.__qualname__}",
            "revision": klass.revision,
            "parameters": int(model.num_parameters()),
        },
        metrics=metrics,
        oracle=_oracle(data),
        throughput={
            "train_tokens_per_s": report.train_tokens / fit_s if fit_s > 0 else None,
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
    paths: list[Path] = field(default_factory=list)


def run_matrix(
    matrix: Matrix,
    results_dir: str | Path,
    *,
    data_dir=None,
    force: bool = False,
    only: set[str] | None = None,
    on_cell_start: Callable[[Cell, int, int], None] | None = None,
    on_cell_end: Callable[[Cell, dict], None] | None = None,
    fit_callback_factory: FitCallbackFactory | None = None,
) -> RunSummary:
    """Run every cell not already done; each finished cell's record is on disk immediately."""
    results_dir = Path(results_dir)
    summary = RunSummary()
    todo = list(cells(matrix, only))
    if only and not todo:
        raise MatrixError(f"{matrix.path}: no model matches {sorted(only)}")
    for i, cell in enumerate(todo):
        desc, key = describe_cell(matrix, cell)
        device = desc["device"]
        path = record_path(results_dir, desc, key)
        if not force and path.exists() and read_record(path)["status"] == "ok":
            summary.skipped_existing += 1
            summary.paths.append(path)
            continue
        if on_cell_start:
            on_cell_start(cell, i, len(todo))
        cb = fit_callback_factory(cell.label) if fit_callback_factory else None
        record = run_cell(matrix, cell, data_dir=data_dir, fit_callback=cb,
                          described=(desc, key))
        write_record(path, record)
        summary.paths.append(path)
        what = f"{cell.label} on {cell.dataset} (seed {cell.seed}, {device})"
        if record["status"] == "ok":
            summary.done += 1
        elif record["status"] == "skipped":
            summary.skipped.append(f"{what}: {record['error']['message']}")
        else:
            summary.failed.append(
                f"{what}: {record['error']['type']}: {record['error']['message']}"
            )
        if on_cell_end:
            on_cell_end(cell, record)
    return summary
