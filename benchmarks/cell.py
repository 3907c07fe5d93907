"""Measuring one cell: fit, score, time and describe it from its :class:`~lmladder.plan.CellPlan`.

The driver calls :func:`run_cell`; the work itself (:func:`_measure`) runs in a child process of
the cell's own (:mod:`lmladder.isolate`) under the plan's time and memory limits, and sends the
fit's :class:`~lmladder.api.Progress` and the cell's :class:`Phase` events through the same
pipe.  The child returns the record's JSON object; the driver checks it into a
:class:`~lmladder.record.Record` (a model that returned a negative or NaN metric makes a failed
record, never a ranked one)::

    driver                         child process (isolate.run_in_child)
    ──────                         ────────────────────────────────────
    run_cell(plan) ── load data ─▶ _measure: build model (plan.build_config, plan.device,
                                            plan.threads) ─▶ fit(plan.fit_budget) ─▶ score
                                            valid/test ─▶ accuracy ─▶ generate ─▶ tasks
         ◀── Progress / Phase ───────────── (each step announced)
    Record.from_json(dict) ◀──── dict ────── the record's JSON object

A model or data failure, a crash of the cell's process or its time limit is recorded, never
raised; KeyboardInterrupt goes through.  Every ok cell records the size of its fitted model saved
with the contract's ``save`` (``record.model["disk_bytes"]``); with a ``save_model_to`` folder the
model is kept there, written by the cell's process into a hidden ``.partial-`` folder and renamed
into place only when the cell ends well, so a killed or failed cell leaves no half folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import isolate, registry, timing
from lmladder.api import Progress, supports_pseudo_logprobs
from lmladder.data import DataError, DataNotFoundError, load_dataset
from lmladder.files import refuse_link
from lmladder.matrix import tasks_module
from lmladder.plan import CellPlan
from lmladder.process import blas_threads
from lmladder.protocol_example import worked_example
from lmladder.record import API_VERSION, Record, RecordError
from lmladder.results import json_default, provenance
from lmladder.scoring import (
    metrics_from_logprobs,
    pseudo_perplexity,
    score_accuracy,
    score_split,
)

GENERATE_TOKENS = 100
MODEL_SUFFIX = ".model"
PARTIAL = ".partial-"  # a model folder being written; never a record, never in a report


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
FitCallback = Callable[[Progress | Phase], None]
FitCallbackFactory = Callable[[str], FitCallback | None]


def run_cell(plan: CellPlan, *, data_dir=None, fit_callback: FitCallback | None = None,
             save_model_to: Path | None = None) -> Record:
    """Fit, score, time and describe one planned cell; returns its record.  A plan that is not
    ``limits.isolated`` runs in this process (for debugging: no time or memory limit, a crash
    ends the run).  ``save_model_to`` keeps the fitted model of an ok cell in that folder."""
    record = _new_record(plan)
    try:
        data = load_dataset(plan.dataset, data_dir)
    except DataNotFoundError as err:
        return _checked(_error(record, "skipped", type(err).__name__, str(err)))
    except (DataError, OSError, ValueError) as err:  # a corpus that is there but unusable
        named = f"dataset {plan.dataset!r}: "  # once, where the error names it already
        return _checked(_error(record, "failed", type(err).__name__,
                               named + str(err).removeprefix(named)))
    if save_model_to is not None and not save_model_to.parent.is_dir():
        return _checked(_error(record, "failed", "ResultsError", (
            f"{save_model_to.parent}: no such folder on {platform.node()}; a cell saves its model "
            "from its own process, so the results folder must be one every machine shares")))
    args = (record, plan, data, data_dir, save_model_to)
    if not plan.limits.isolated:
        return _checked(_measure(None, *args, fit_callback))
    outcome = isolate.run_in_child(
        _measure, (*args, None), time_limit=plan.limits.time_limit_s,
        memory_limit_mib=plan.limits.memory_limit_mib, on_message=fit_callback,
    )
    if outcome.error is not None:
        if save_model_to is not None:  # the killed child could not clean up after itself
            shutil.rmtree(partial_model_folder(save_model_to), ignore_errors=True)
        return _checked(_error(record, "failed", *outcome.error))
    return _checked(outcome.value)


def failed_record(plan: CellPlan, kind: str, message: str) -> Record:
    """The record of a cell that failed outside :func:`run_cell` (its Ray worker died, ...):
    ``kind`` is the error's type, ``message`` one line."""
    return _checked(_error(_new_record(plan), "failed", kind, message))


def _new_record(plan: CellPlan) -> dict[str, Any]:
    return {
        "api_version": API_VERSION,
        "key": plan.key,
        "status": "ok",
        "error": None,
        "cell": plan.section().to_json(),
        "provenance": provenance(),
        "limits": plan.limits.to_json(),
    }


def _error(record: dict, status: str, kind: str, message: str, tb: str | None = None) -> dict:
    record.update(status=status, error={"type": kind, "message": message, "traceback": tb})
    return record


def _checked(record: dict) -> Record:
    """The measured record as a :class:`Record`; one whose measurements fail the record's
    checks (a negative or NaN metric from a broken model) is kept as a failed record."""
    try:  # as JSON values (numpy scalars, tuples), so the record equals the one read back
        return Record.from_json(json.loads(json.dumps(record, default=json_default)))
    except (RecordError, TypeError) as err:  # TypeError: a value JSON cannot hold
        kept = {k: record[k] for k in ("api_version", "key", "cell", "provenance", "limits")}
        return Record.from_json(_error(kept, "failed", "RecordError", (
            f"the cell's measurements cannot be recorded: {str(err).removeprefix('<record>: ')}")))


def _measure(send, record, plan, data, data_dir, save_model_to, fit_callback) -> dict:
    """The work of one cell (in its child process when ``send`` is given)."""
    callback = send or fit_callback
    saved = _set_threads(plan.threads)
    try:
        with blas_threads(plan.threads):  # so a cell runs on the threads its record states
            _fill(record, plan, data, data_dir, callback, save_model_to)
    except MemoryError:
        _error(record, "failed", "MemoryError",
               isolate.memory_error_message(plan.limits.memory_limit_mib))
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


def _fill(record: dict, plan: CellPlan, data, data_dir, fit_callback, save_model_to) -> None:
    device = plan.device
    klass = registry.model_class(plan.model)
    model = registry.build(plan.model, dict(plan.build_config)).to(device)
    _set_threads(plan.threads)  # building the model may have imported torch just now
    budget = plan.fit_budget
    data = data.with_train_fraction(plan.fraction)
    scoring = plan.scoring
    policy = scoring.policy()
    record["dataset"] = data.summary()
    record["budget_used"] = dataclasses.asdict(budget)
    record["protocol"] = {
        **policy.to_dict(),
        "accuracy_tokens": scoring.accuracy_tokens,
        "first_context": f"one boundary token {data.vocab.boundary!r}",
        "token": "word + one <eos> per line" if data.level == "word" else "character",
        "unk": data.vocab.unk,
        # the report prints this worked example; it never scores anything itself
        "example": worked_example(data.level, data.vocab.boundary or "<eos>", data.vocab.unk),
    }
    # the cell's steps, announced as each starts (the fit also reports its own progress)
    steps = ["fit", *(f"scoring {s.name}" for s in (data.valid, data.test)), "top-k accuracy"]
    steps += ["pseudo-perplexity"] if supports_pseudo_logprobs(model) else []
    steps += ["generating"] if model.closed_vocabulary else []
    steps += [f"task {name}" for name in plan.tasks]

    def phase(name: str) -> None:
        if fit_callback is not None:
            fit_callback(Phase(name, steps.index(name), len(steps)))

    np.random.seed(plan.seed)
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
        m, _ = score_split(model, split, data.vocab, policy=policy, name=plan.label)
        timing.synchronize(device)
        times[f"score_{split.name}_s"] = time.perf_counter() - t0
        metrics[split.name] = m.to_dict()
    phase("top-k accuracy")
    metrics["test_accuracy"] = score_accuracy(
        model, data.test, policy=policy, max_tokens=scoring.accuracy_tokens
    )
    if "pseudo-perplexity" in steps:
        phase("pseudo-perplexity")
    metrics["test_pseudo"] = pseudo_perplexity(  # masked LMs only; not comparable with ppl
        model, data.test, data.vocab, policy=policy, name=plan.label,
        max_tokens=scoring.accuracy_tokens,
    )

    sample, gen_tps = None, None
    if model.closed_vocabulary:
        phase("generating")
        t0 = time.perf_counter()
        ids = model.generate(data.test.ids[:0], GENERATE_TOKENS, seed=plan.seed)
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
    for name in plan.tasks:
        phase(f"task {name}")
        record["tasks"][name] = _run_task(name, model, data, data_dir, plan)
    if save_model_to is not None:
        _publish(partial, save_model_to)
        record["saved_model"] = save_model_to.name


def _run_task(name: str, model, data, data_dir, plan: CellPlan) -> dict:
    """One task's scores for the cell's fitted model, with the task's metric specs; a task that
    cannot use the model is "not applicable", one that breaks is "failed" with its error (the
    cell's own metrics stand)."""
    tasks = tasks_module()
    subject = tasks.Subject(
        model, data, plan.fit_budget, None if data_dir is None else str(data_dir),
        fresh=lambda: registry.build(plan.model, dict(plan.build_config)).to(plan.device),
    )
    task = tasks.task_class(name)
    t0 = time.perf_counter()
    try:
        result = {"status": "ok", **task().evaluate(subject, seed=plan.seed)}
    except tasks.NotApplicable as why:
        result = {"status": "not applicable", "reason": str(why)}
    except (DataNotFoundError, DataError) as err:
        result = {"status": "skipped" if isinstance(err, DataNotFoundError) else "failed",
                  "error": {"type": type(err).__name__, "message": str(err)}}
    except Exception as err:  # noqa: BLE001 -- one broken task must not lose the cell
        result = {"status": "failed", "error": {"type": type(err).__name__, "message": str(err),
                                                "traceback": traceback.format_exc()}}
    result["metrics"] = [m.to_json() for m in task.metrics]
    result["seconds"] = time.perf_counter() - t0
    return result


def _oracle(data) -> dict | None:
    if data.test.oracle_logprobs is None:
        return None
    return {
        s.name: metrics_from_logprobs(s.oracle_logprobs, s).to_dict()
        for s in (data.valid, data.test)
    }


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
    for path in (partial, folder, old):  # a planted link is refused, never moved or emptied
        refuse_link(path)
    if folder.exists():
        os.replace(folder, _fresh(old))
    os.replace(partial, folder)
    shutil.rmtree(old, ignore_errors=True)

