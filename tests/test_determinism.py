"""Budgets in tokens and steps make results independent of machine load: the same matrix run on a
quiet machine and under a CPU hog gives identical numbers (only slower)."""

from __future__ import annotations

import multiprocessing

import pytest

from lmladder.cli import main
from lmladder.results import load_records
from lmladder.run import load_matrix, select_cells
from tests.helpers import write_matrix

MODELS = [
    {"name": "hmm", "label": "HMM 8", "budget": {"steps": 6}, "config": {"states": 8}},
    {"name": "lstm", "label": "LSTM", "budget": {"tokens": 6000},
     "config": {"hidden": 32, "layers": 1, "bptt": 16, "batch_size": 8, "eval_tokens": 500}},
    {"name": "transformer", "label": "Transformer", "budget": {"steps": 15},
     "config": {"layers": 1, "heads": 2, "width": 32, "context": 16, "batch_size": 8,
                "eval_tokens": 500}},
]


def _numbers(results) -> dict:
    out = {}
    for r in load_records(results):
        assert r.status == "ok", r.error
        out[r.cell.label] = (r.metrics, r.fit["train_tokens"], r.fit["steps"],
                             r.sample, [h.get("valid_nll") for h in r.fit["history"]])
    return out


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@pytest.mark.slow  # about 4 s: three neural cells, twice
def test_a_loaded_machine_gives_the_same_numbers(tmp_path):
    path = write_matrix(tmp_path / "m.toml", MODELS, scoring={"accuracy_tokens": 500},
                        datasets=["synthetic"], devices=["cpu"], threads=1)
    quiet, loaded = tmp_path / "quiet", tmp_path / "loaded"
    assert main(["run", str(path), "--results", str(quiet), "--no-report"]) == 0
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    hogs = [ctx.Process(target=_spin, args=(stop,), daemon=True) for _ in range(3)]
    for h in hogs:
        h.start()
    try:
        assert main(["run", str(path), "--results", str(loaded), "--no-report"]) == 0
    finally:
        stop.set()
        for h in hogs:
            h.join(timeout=10)
    assert _numbers(loaded) == _numbers(quiet)


@pytest.mark.parametrize("name", ["quick"])
def test_the_main_jobs_budgets_are_counts_not_seconds(name):
    for cell in select_cells(load_matrix(name)):
        assert "seconds" not in cell.model.budget, (cell.label, cell.model.budget)
