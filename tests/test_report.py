"""The report is rendered from records only; sections appear when the records call for them."""

import copy

import pytest

from lmladder import registry
from lmladder.reports import plots
from lmladder.reports.render import render_html, results_frame
from lmladder.results import load_records
from lmladder.run import load_matrix, run_matrix


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    registry.MODELS.setdefault("toy-uniform", registry.Entry("tests.toy_models:UniformLM"))
    path = tmp_path_factory.mktemp("m") / "m.toml"
    path.write_text('[matrix]\ndatasets = ["synthetic"]\n[[models]]\nname = "toy-uniform"\n')
    res = tmp_path_factory.mktemp("res")
    run_matrix(load_matrix(str(path)), res)
    (rec,) = load_records(res)
    del registry.MODELS["toy-uniform"]
    return rec


def variant(rec, *, label, config, ppl, seed=0):
    r = copy.deepcopy(rec)
    r["cell"].update(label=label, config=config, seed=seed, model="hmm")
    r["metrics"]["test"]["ppl"] = ppl
    return r


def test_sweep_curve_for_one_varying_numeric_key(record):
    records = [variant(record, label=f"HMM K={k}", config={"states": k, "lr": 0.1}, ppl=p)
               for k, p in ((16, 300.0), (64, 200.0), (256, 150.0))]
    records.append(variant(record, label="HMM K=64 b", config={"states": 64, "lr": 0.1},
                           ppl=220.0, seed=1))
    found = plots.find_sweeps(records)
    assert found == {("hmm", "synthetic", "states"): [(16, 300.0), (64, 210.0), (256, 150.0)]}
    html = render_html(records)
    assert "Scaling curves" in html


def test_no_sweep_when_two_keys_vary(record):
    records = [variant(record, label=str(k), config={"states": k, "lr": k / 10}, ppl=1.0 + k)
               for k in (1, 2, 3)]
    assert plots.find_sweeps(records) == {}
    assert "Scaling curves" not in render_html(records)


def test_model_inspection_tables_are_rendered_escaped(record):
    r = copy.deepcopy(record)
    r["inspect"] = [{"title": "top words per state", "columns": ["state", "words"],
                     "rows": [[0, "<eos>"], [1, "the of a"]]}]
    html = render_html([r])
    assert "top words per state" in html and "&lt;eos&gt;" in html and "<eos>" not in html


def test_frame_and_best_marking(record):
    a = variant(record, label="A", config={}, ppl=10.0)
    b = variant(record, label="B", config={}, ppl=20.0)
    df = results_frame([a, b])
    assert list(df["model"]) == ["A", "B"]
    html = render_html([a, b])
    assert '<td class="best">10.00</td>' in html
    assert html.index("<td>A</td>") < html.index("<td>B</td>")  # sorted by test ppl


def test_empty_results_are_an_error():
    with pytest.raises(ValueError):
        render_html([])
