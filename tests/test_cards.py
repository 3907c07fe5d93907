"""Model cards and the scoring protocol as prose (lmladder.reports.cards / .protocol).

Cards are built from real records of a tiny in-process run (n-grams without some discounts, a
small HMM) and from crafted variants; the protocol's worked example is checked against
lmladder.scoring itself.
"""

import copy
import math
import re

import numpy as np
import pytest
from markupsafe import Markup

from lmladder.corpus import Split
from lmladder.protocol_example import worked_example
from lmladder.reports.cards import card_data, history_table, model_cards, thin
from lmladder.reports.protocol import protocol_data, protocol_prose
from lmladder.results import load_records, parse_record
from lmladder.run import load_matrix, run_matrix
from lmladder.scoring import LN2, metrics_from_logprobs
from tests.helpers import write_matrix

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict:
    """Real records of one tiny run on the synthetic corpus, by label: add-one (no discounts),
    absolute discounting (D1 only) and a 4-state HMM fitted for 3 EM steps."""
    path = tmp_path_factory.mktemp("m") / "m.toml"
    write_matrix(path, [
        {"name": "laplace2", "label": "Add-one 2"},
        {"name": "ad3", "label": "AD3"},
        {"name": "hmm", "label": "HMM 4", "budget": {"steps": 3},
         "config": {"states": 4, "threads": 1}},
    ], datasets=["synthetic"])
    out = tmp_path_factory.mktemp("res")
    run_matrix(load_matrix(str(path)), out)
    found = {r.label: r.to_json() for r in load_records(out)}  # tests vary the JSON
    assert set(found) == {"Add-one 2", "AD3", "HMM 4"}
    assert all(r["status"] == "ok" for r in found.values())
    return found


def recs(*records):
    """The JSON records as the report receives them: read and checked."""
    return [parse_record(r) for r in records]


def card(label, records) -> str:
    html = model_cards([(label, recs(*records))])
    assert isinstance(html, Markup)
    return str(html)


# ---- cards -------------------------------------------------------------------------------------


def test_a_card_is_collapsed_and_shows_config_and_parameters(records):
    r = records["AD3"]
    html = card("AD3", [r])
    assert html.count('<details class="card"') == 1 and "<details open" not in html
    assert "<summary><b>AD3</b>" in html
    params = f"{r['model']['parameters']:,}"
    assert params in html and "parameters" in html
    for key, value in r["cell"]["config"].items():
        assert f"<th>{key}</th><td class=\"text\">" in html, key
        assert str(value) in html
    assert "n-gram" in html  # the family, from the record
    assert r["provenance"]["git_commit"][:10] in html


def test_no_none_in_ngram_cards_and_empty_discount_columns_left_out(records):
    add_one, ad3 = card("Add-one 2", [records["Add-one 2"]]), card("AD3", [records["AD3"]])
    for html in (add_one, ad3):
        assert "None" not in html and "null" not in html
    # add-one has no discounts at all, absolute discounting only D1
    assert "<th>n-grams</th>" in add_one and "<th>D1</th>" not in add_one
    assert "<th>D1</th>" in ad3 and "<th>D2</th>" not in ad3 and "<th>D3+</th>" not in ad3


def test_a_partly_empty_table_never_prints_none(records):
    r = copy.deepcopy(records["AD3"])
    r["inspect"] = [{"title": "t", "columns": ["a", "b", "c"],
                     "rows": [[1, None, None], [None, None, None], [2, "", 0.5]]}]
    data = card_data("x", recs(r))["tables"]["tables"][0]
    assert data["columns"] == ["a", "c"]  # b is empty in every row
    assert len(data["rows"]) == 2  # the all-None row is left out
    assert [c["text"] for c in data["rows"][0]] == ["1", "—"]
    assert "None" not in card("x", [r])


def test_hmm_cards_show_at_most_three_tables_with_text_left_aligned(records):
    r = copy.deepcopy(records["HMM 4"])
    assert r["inspect"], "the HMM records its state tables"
    first = r["inspect"][0]
    r["inspect"] = [{**first, "title": f"table {i}"} for i in range(5)]
    html = card("HMM 4", [r])
    shown = re.findall(r"<h4>table (\d)</h4>", html)
    assert shown == ["0", "1", "2"]
    assert "2 more tables in the result record" in html
    # the top-words column is text: a class that the cards' stylesheet aligns left
    words = re.findall(r'<td class="text">([^<]*\(0\.\d\d\)[^<]*)</td>', html)
    assert words, "the top words are text cells"
    assert re.search(r"\.card th,\.card td\.text\{text-align:left\}", html)
    assert re.search(r"\.card td\{text-align:right", html)  # numbers stay right-aligned


def test_fit_history_is_thinned_to_twenty_rows(records):
    r = copy.deepcopy(records["HMM 4"])
    r["fit"]["history"] = [{"step": i, "loss": 5.0 - i / 1000, "valid_nll": 5.1 - i / 1000}
                           for i in range(500)]
    table = history_table(r["fit"]["history"])
    assert len(table["rows"]) == 20
    steps = [row[0]["text"] for row in table["rows"]]
    assert steps[0] == "0" and steps[-1] == "499"  # first and last kept
    assert "20 of 500 validation points" in table["caption"]
    html = card("HMM 4", [r])
    body = html.split("Fit history", 1)[1].split("</table>", 1)[0]
    assert body.count("<tr>") == 21  # header + 20 rows
    assert thin(5, 20) == [0, 1, 2, 3, 4]
    assert thin(101, 11) == list(range(0, 101, 10))


def test_history_prefers_validation_points_and_moves_constant_columns(records):
    history = [{"states": 4, "pass": i, "train_nll": 5.0 - i, "valid_nll": None} for i in range(5)]
    history += [{"states": 4, "pass": 5 + i, "valid_nll": 3.0 - i / 10} for i in range(3)]
    table = history_table(history)
    assert len(table["rows"]) == 3  # only the points with a validation score
    assert "states = 4 in every row" in table["caption"]
    assert "states" not in table["columns"]
    assert history_table([]) is None and history_table("not a list") is None


def test_training_amount_and_stop_reason(records):
    r = records["HMM 4"]
    facts = dict(card_data("HMM 4", recs(r))["training"])
    assert facts["budget"] == "3 steps"
    assert "epoch" in facts["training tokens"]
    assert facts["stopped by"] == r["fit"]["notes"]["stopped_by"]


def test_several_seeds_show_the_first_and_say_how_many(records):
    a = records["AD3"]
    b = copy.deepcopy(a)
    b["cell"]["seed"] = 1
    html = card("AD3", [a, b])
    assert "2 seeds (0, 1); the details below are seed 0" in html
    assert html.count('<details class="card"') == 1


def test_task_examples_and_sample_are_shown(records):
    r = copy.deepcopy(records["AD3"])
    r["tasks"] = {"translation": {"status": "ok", "bleu": 30.0, "metrics": [], "samples": [
        {"source": f"a man {i}", "reference": f"ein Mann {i}", "output": f"ein {i}"}
        for i in range(5)]}}
    html = card("AD3", [r])
    assert "translation examples" in html and "3 of 5 examples kept" in html
    assert "ein Mann 2" in html and "ein Mann 3" not in html
    assert "<th>source</th><th>reference</th><th>output</th>" in html
    assert "<pre>" in html  # the generated sample


def test_everything_in_a_card_is_escaped(records):
    r = copy.deepcopy(records["AD3"])
    r["cell"]["config"][SCRIPT] = SCRIPT
    r["sample"] = SCRIPT
    r["inspect"][0]["title"] = SCRIPT
    r["tasks"] = {SCRIPT: {"status": "ok", "samples": [{SCRIPT: SCRIPT}]}}
    html = card(SCRIPT, [r])
    assert "<script>" not in html
    assert html.count(ESCAPED) >= 5


def test_cards_show_free_form_parts_of_unexpected_shape_without_none(records):
    r = copy.deepcopy(records["AD3"])  # fit, inspect and sample are checked as a whole only
    r.update(fit={"history": "x", "notes": [1]}, inspect=[5, {"a": 1}], sample="")
    r["cell"]["config"] = {"k": None, "v": [1, 2]}
    html = card("odd", [r])
    assert "odd" in html and "None" not in html and "null" not in html
    assert str(model_cards([])) == ""


# ---- protocol prose ----------------------------------------------------------------------------


def as_dataset(r, **changes):
    """``r`` describing another dataset; like the harness, it carries that dataset's worked
    example."""
    r = copy.deepcopy(r)
    r["dataset"].update(changes)
    d = r["dataset"]
    r["protocol"]["example"] = worked_example(d.get("level"), d.get("boundary") or "<eos>",
                                              d.get("unk"))
    return r


def test_prose_names_token_boundary_and_unk(records):
    r = records["AD3"]
    html = str(protocol_prose(recs(r)))
    assert "A token is one whitespace-separated word" in html
    assert ("each line ends with one &lt;eos&gt; token, which is predicted and counted"
            in html.replace("Each", "each"))
    assert "History carries across line boundaries" in html
    assert "No &lt;unk&gt;" in html  # the synthetic corpus has none
    ptb = as_dataset(r, name="ptb", unk="<unk>")
    html = str(protocol_prose(recs(ptb)))
    assert "&lt;unk&gt; is an ordinary vocabulary word" in html
    assert "predicted, scored and counted like any other token" in html
    assert ("first 5,000 tokens of the test split" in html
            or f"first {r['protocol']['accuracy_tokens']:,} tokens" in html)
    assert f"{r['dataset']['splits']['test']['tokens']:,}" in html  # split sizes in tokens


def test_reset_and_window_are_said_in_words(records):
    r = copy.deepcopy(records["AD3"])
    r["protocol"].update(reset_at_boundary=True, window=64, stride=32)
    html = str(protocol_prose(recs(r)))
    assert "Every line is scored on its own" in html
    assert "W = 64" in html and "S = 32" in html and "W − S + 1 = 33" in html


def test_worked_example_uses_the_scoring_module(records):
    ex = worked_example("word", "<eos>", "<unk>")
    assert ex["tokens"] == ["the", "<unk>", "sat", "<eos>"]
    lp = np.array(ex["logprobs"])
    # the same numbers through lmladder.scoring, and by hand
    m = metrics_from_logprobs(lp, Split("x", np.arange(4), num_chars=14, num_words=4,
                                        num_lines=1))
    assert ex["metrics"] == m.to_dict() and ex["count"] == 4
    assert math.isclose(m.ppl, math.exp(-lp.mean()))
    assert math.isclose(m.bpc, -lp.sum() / LN2 / len("the <unk> sat\n"))
    r = as_dataset(records["AD3"], name="d", level="word", boundary="<eos>", unk="<unk>")
    html = str(protocol_prose(recs(r)))
    assert f"{m.ppl:.4f}" in html and f"{m.bpc:.4f}" in html
    assert "metrics_from_logprobs" in html
    char = worked_example("char", "\n")
    assert math.isclose(char["metrics"]["ppl"], math.exp(-np.mean(char["logprobs"])))
    assert char["metrics"]["bpc"] == pytest.approx(char["metrics"]["bits_per_token"])


def test_the_worked_example_travels_in_the_record(records):
    """The harness computes it (every new record; migration for older ones): the report only
    prints it."""
    assert records["AD3"]["protocol"]["example"] == worked_example("word", "<eos>", None)
    old = copy.deepcopy(records["AD3"])
    del old["protocol"]["example"]
    old["api_version"] = 3
    assert parse_record(old).protocol["example"] == records["AD3"]["protocol"]["example"]
    current = copy.deepcopy(records["AD3"])
    del current["protocol"]["example"]
    html = str(protocol_prose(recs(current)))  # a record without one: no example, no guess
    assert "Worked example." not in html and "Tokens." in html


def test_two_levels_are_two_blocks_and_one_protocol_is_stated_once(records):
    r = records["AD3"]
    chars = as_dataset(r, name="tiny", level="char", boundary="\n", vocab_size=65)
    twin = as_dataset(r, name="synthetic-twin")
    data = protocol_data(recs(r, chars, twin))
    assert [g["datasets"] for g in data["groups"]] == [["synthetic", "synthetic-twin"],
                                                        ["tiny"]]
    html = str(protocol_prose(recs(r, chars, twin)))
    assert html.count('class="protocol-block"') == 2
    assert "A token is one character of the text" in html
    assert html.count("Worked example.") == 2  # one per token unit


def test_prose_escapes_and_says_when_no_record_describes_its_dataset(records):
    r = as_dataset(records["AD3"], name=SCRIPT)
    html = str(protocol_prose(recs(r)))
    assert "<script>" not in html and ESCAPED in html
    bare = copy.deepcopy(records["AD3"])
    del bare["dataset"], bare["protocol"]
    odd = str(protocol_prose(recs(bare)))
    assert "No result record describes its dataset" in odd


def test_the_page_can_include_the_protocol_template_with_its_prose(records):
    """render.py includes protocol.html.j2 as a section: ``data.prose`` (markup from
    protocol_prose) is placed as is, not escaped a second time."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lmladder.reports", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.get_template("protocol.html.j2")
    prose = protocol_prose(recs(as_dataset(records["AD3"], name="d")))
    page = template.render(data={"prose": prose})
    assert 'class="protocol-block"' in page and "&amp;lt;" not in page  # not escaped twice


def test_card_ids_are_unique(records):
    r = records["AD3"]
    html = str(model_cards([("AD3", recs(r)), ("AD3", recs(r))]))
    ids = re.findall(r'<details class="card" id="([^"]+)"', html)
    assert len(ids) == 2 and len(set(ids)) == 2
