"""The notebook path of the README's "From Python": everything through ``import lmladder``."""

from __future__ import annotations

import json

import pytest

import lmladder
from tests.helpers import write_matrix


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    path = write_matrix(folder / "tiny.toml", [
        "kn3", {"name": "wb3", "label": "Witten-Bell 3", "budget": {"tokens": 1000000}},
    ], datasets=["synthetic"], seeds=[0, 1])
    summary = lmladder.run_matrix(lmladder.load_matrix(str(path)), str(folder / "out"))
    assert summary.done == 4 and not summary.failed
    return folder / "out"


def test_build_fit_score(data):
    model = lmladder.build("kn3")
    model.fit(data.train.ids, data.vocab)
    test = lmladder.score(model, data)
    assert isinstance(test, lmladder.Metrics) and test.tokens == data.test.num_tokens
    assert lmladder.score(model, data, "valid").tokens == data.valid.num_tokens
    with pytest.raises(KeyError, match="no split 'dev'"):
        lmladder.score(model, data, "dev")


def test_load_results_is_one_tidy_row_per_cell(results):
    frame = lmladder.load_results(results)
    records = {json.loads(p.read_text())["key"]: json.loads(p.read_text())
               for p in results.glob("*.json")}
    assert len(frame) == len(records) == 4
    assert set(frame["label"]) == {"kn3", "Witten-Bell 3"} and set(frame["seed"]) == {0, 1}
    for column in ("matrix", "model", "dataset", "device", "config", "status", "budget_tokens",
                   "valid_ppl", "test_ppl", "test_bpc", "test_word_ppl", "test_accuracy_top1",
                   "train_tokens_per_s", "fit_s", "rss_peak_mib", "parameters", "git_commit"):
        assert column in frame, column
    for _, row in frame.iterrows():
        record = records[row["key"]]
        assert row["test_ppl"] == record["metrics"]["test"]["ppl"]
        assert row["parameters"] == record["model"]["parameters"]
        assert json.loads(row["config"]) == record["cell"]["config"]
    wb = frame[frame["label"] == "Witten-Bell 3"]
    assert (wb["budget_tokens"] == 1_000_000).all() and wb["budget_steps"].isna().all()
    table = frame.pivot_table(index="label", columns="dataset", values="test_ppl")
    assert table.shape == (2, 1)


def test_render_report(results, tmp_path):
    out = lmladder.render_report(results, tmp_path / "report.html")
    assert "Witten-Bell 3" in out.read_text()
