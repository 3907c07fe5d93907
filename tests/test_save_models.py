"""``lmladder run --save-models`` and every ok cell's ``model.disk_bytes`` (issue 11).

A kept model must be the model the record measured: reloaded with ``lmladder.load_model`` it
scores the record's test perplexity exactly.  ``disk_bytes`` is checked against the folder's
files as ``os`` lists them.  A cell killed while saving (SIGKILL from inside ``save``), one that
fails in ``save`` on a forced rerun, and a partial folder left by a run killed as a whole
(``kill -9`` of everything) must leave no half folder and never touch a kept ok model.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import lmladder
from lmladder import registry
from lmladder.cli import main
from lmladder.data import load_dataset
from lmladder.results import load_records, read_record
from lmladder.run import load_matrix, run_matrix
from lmladder.scoring import score_split
from tests.helpers import write_matrix
from tests.toy_models import UniformLM

SAVE_FAILS = "LMLADDER_TEST_SAVE"  # "kill" or "raise": how SaveBombLM's save fails, if at all


class SaveBombLM(UniformLM):
    """The uniform model, whose ``save`` writes its files and then, if ``$LMLADDER_TEST_SAVE``
    says so, dies by SIGKILL or raises: the environment, not the config, so the cell's key is
    the same whether it fails or not."""

    def save(self, directory):
        out = super().save(directory)
        how = os.environ.get(SAVE_FAILS)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "raise":
            raise OSError("disk full while saving")
        return out


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy-save-bomb",
                        registry.Entry("tests.test_save_models:SaveBombLM"))


def _matrix_file(tmp_path: Path, name: str) -> Path:
    return write_matrix(tmp_path / f"{name}.toml", [name], scoring={"accuracy_tokens": 200},
                        datasets=["synthetic"], devices=["cpu"], threads=1)


def _matrix(tmp_path: Path, name: str):
    return load_matrix(str(_matrix_file(tmp_path, name)))


def _listed_bytes(folder: Path) -> int:
    return sum(os.path.getsize(folder / f) for f in os.listdir(folder))


def _leftovers(results: Path) -> list[str]:
    return sorted(p.name for p in results.iterdir() if p.is_dir() and p.name != ".locks")


def test_a_saved_model_reloads_and_scores_its_record_exactly(tmp_path):
    res = tmp_path / "res"
    assert main(["run", str(_matrix_file(tmp_path, "kn3")), "--results", str(res),
                 "--save-models", "--no-report"]) == 0
    (record,) = load_records(res)
    folder = res / record.saved_model
    assert folder.name == next(res.glob("*.json")).stem + ".model"
    assert record.model["family"] == "n-gram" == record.family
    assert record.model["disk_bytes"] == _listed_bytes(folder) > 0

    model = lmladder.load_model(folder)
    data = load_dataset("synthetic")
    metrics, _ = score_split(model, data.test, data.vocab)
    assert metrics.ppl == record.metric("test", "ppl")

    # not kept: the same size is recorded, and nothing stays behind
    run_matrix(_matrix(tmp_path, "kn3"), tmp_path / "unsaved")
    (unsaved,) = load_records(tmp_path / "unsaved")
    assert unsaved.saved_model is None and "saved_model" not in unsaved.to_json()
    assert unsaved.model["disk_bytes"] == record.model["disk_bytes"]
    assert _leftovers(tmp_path / "unsaved") == []


def test_a_cell_killed_while_saving_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(SAVE_FAILS, "kill")
    summary = run_matrix(_matrix(tmp_path, "toy-save-bomb"), tmp_path / "res", save_models=True)
    (record,) = load_records(tmp_path / "res")
    assert record.status == "failed" and "signal 9" in record.error.message
    assert summary.failed and _leftovers(tmp_path / "res") == []


def test_a_failed_forced_rerun_keeps_the_saved_model(tmp_path, monkeypatch):
    matrix, res = _matrix(tmp_path, "toy-save-bomb"), tmp_path / "res"
    run_matrix(matrix, res, save_models=True)
    (path,) = res.glob("*.json")
    kept = res / read_record(path).saved_model
    before = {f: (kept / f).read_bytes() for f in os.listdir(kept)}

    monkeypatch.setenv(SAVE_FAILS, "raise")
    summary = run_matrix(matrix, res, save_models=True, force=True)
    assert summary.kept and read_record(path).status == "ok"
    assert {f: (kept / f).read_bytes() for f in os.listdir(kept)} == before
    assert _leftovers(res) == [kept.name]


def test_a_partial_folder_of_a_killed_run_is_removed_and_the_cell_saved(tmp_path):
    matrix, res = _matrix(tmp_path, "toy-save-bomb"), tmp_path / "res"
    run_matrix(matrix, res)  # a record names the cell's files
    (path,) = res.glob("*.json")
    partial = res / f".partial-{path.stem}.model"
    partial.mkdir()
    (partial / "model.json").write_text("{")  # what a kill -9 mid-save leaves
    run_matrix(matrix, res, save_models=True, force=True)
    assert _leftovers(res) == [f"{path.stem}.model"]
    assert isinstance(lmladder.load_model(res / f"{path.stem}.model"), SaveBombLM)
