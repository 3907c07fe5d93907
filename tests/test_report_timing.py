"""Issue 21, section 1: the time-to-target table, the time-to-ppl benchmark beside it, and
iteration counts for fits that count iterations (an HMM's EM passes).

Records are built by hand (tests/test_report_page.make): the target is the best whole-data row
whose verdict is "closed form"; a row is timed from its fit's history (``seconds``,
``valid_nll``, ``tokens``).  The benchmark's file is written as ``lmladder.perf.time_to_ppl``
writes it, then broken key by key.
"""

from __future__ import annotations

import json
import math
import re

import pytest

from lmladder.reports import render
from lmladder.reports.anchors import Anchor
from lmladder.reports.render import render_html, render_report
from lmladder.reports.rows import training
from lmladder.reports.timing import (
    TIME_TO_PPL,
    BenchmarkError,
    parse_benchmark,
    read_benchmark,
    target_row,
)
from tests.test_report_page import TRAIN_TOKENS, make, recs, save, section

KN5_VALID = 141.19 * 1.05  # make() gives a valid ppl 5 % above the test ppl: 148.25


def timed(label, points, *, family="RNN", model=None, threads=1, epochs=3.0, **kw):
    """A trained row whose history holds ``points``: (seconds, valid ppl, tokens) each."""
    history = [{"step": 100 * (i + 1), "tokens": tokens, "seconds": seconds,
                "valid_nll": math.log(ppl)} for i, (seconds, ppl, tokens) in enumerate(points)]
    fit = {"train_tokens": int(epochs * TRAIN_TOKENS), "steps": 100 * len(points),
           "seconds": points[-1][0], "history": history, "notes": {"stopped_by": "patience"}}
    record = make(label, ppl=min(p for _, p, _ in points), family=family, model=model, fit=fit,
                  budget={"seconds": 3600}, **kw)
    record["cell"]["threads"] = threads
    return record


def kn(label, ppl, family="n-gram"):
    return make(label, ppl=ppl, family=family, model=label.lower())


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'").strip()


def rows(html: str) -> dict[str, str]:
    """The time-to-target table's rows by their label, as text."""
    body = section(html, "time-to-target")
    table = body[body.index('time-to-target"'):]
    table = table[:table.index("</table>")]
    out = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
        label = re.search(r"<td>([^<]+)</td>", row).group(1)
        out[label] = text(row)
    return out


LSTM = [(300.0, 200.0, 200_000), (600.0, 147.0, 400_000), (900.0, 120.0, 600_000)]


def test_the_target_is_the_best_closed_form_row_and_each_row_is_timed_to_it():
    records = [kn("KN5", 141.19), kn("KN3", 148.3),
               make("unigram", ppl=640.0, family="unigram", model="unigram"),
               timed("LSTM small 2x200", LSTM),
               timed("Transformer 2x128", [(120.0, 400.0, 50_000), (240.0, 180.0, 100_000)],
                     family="Transformer", model="gpt", threads=2),
               timed("HMM 64 states", [(60.0, 300.0, 929_589), (90.0, 264.0, 1_859_178)],
                     family="HMM", model="hmm")]
    html = render_html(recs(records), anchors=[])
    body = text(section(html, "time-to-target"))
    assert "best count-based row, valid ppl 148.2 (KN5: counted in one pass" in body
    assert "its own evaluations included" in body and "one thread unless" in body
    found = rows(html)
    assert list(found) == ["LSTM small 2x200", "Transformer 2x128", "HMM 64 states"]
    # first validation at or below 148.25: the second, after 10 minutes and 400,000 tokens
    lstm = found["LSTM small 2x200"]
    assert "10.0 min not yet at 5.0 min 400,000 " in lstm
    assert f" {400_000 / TRAIN_TOKENS:.2g} " in lstm and "best valid ppl 120.0" in lstm
    assert "1 thread" in lstm
    assert "not reached — — best valid ppl 180.0 2 threads" in found["Transformer 2x128"]
    assert "not reached" in found["HMM 64 states"] and "best valid ppl 264.0" in found[
        "HMM 64 states"]
    # the target row and rows without a timed history are not timed rows
    assert "KN5" not in found and "unigram" not in found


def test_the_target_is_chosen_by_verdict_never_by_family():
    # a closed-form row of any family name is the target; a converged neural row never is
    records = recs([kn("counts 4-gram", 200.0, family="whatever"),
                    timed("LSTM", [(60.0, 150.0, 10_000)])])
    ctx = render.context(records, anchors=[])
    top = target_row(ctx.measured("ptb", full=True))
    assert top is not None and top.label == "counts 4-gram"
    # a learning-curve share is never the target
    share = kn("KN5", 100.0)
    share["cell"]["fraction"] = 0.25
    share["key"] = "f" * 16
    ctx = render.context(records + recs([share]), anchors=[])
    assert target_row(ctx.measured("ptb")).label == "counts 4-gram"


def test_no_closed_form_row_or_no_timed_history_means_no_section():
    assert 'id="time-to-target"' not in render_html(recs([timed("LSTM", LSTM)]), anchors=[])
    assert 'id="time-to-target"' not in render_html(
        recs([kn("KN5", 141.19), make("LSTM", ppl=130.0)]), anchors=[])


def test_seeds_are_averaged_and_a_seed_that_did_not_reach_it_says_so():
    both = [timed("LSTM", LSTM, seed=0),
            timed("LSTM", [(s + 60.0, p, t) for s, p, t in LSTM], seed=1)]
    html = render_html(recs([kn("KN5", 141.19), *both]), anchors=[])
    assert "10.5 min (mean of 2 seeds) not yet at 5.5 min" in rows(html)["LSTM"]
    one_short = [timed("LSTM", LSTM, seed=0), timed("LSTM", LSTM[:1], seed=1)]
    html = render_html(recs([kn("KN5", 141.19), *one_short]), anchors=[])
    assert "not reached (1 of 2 seeds)" in rows(html)["LSTM"]


def test_time_to_the_literature_valid_figure_of_the_rows_model():
    zaremba = Anchor("ptb", "metrics.valid.ppl", 120.7, "LSTM small 2x200", "RNN",
                     "Zaremba et al. 2014, Table 1")
    records = [kn("KN5", 141.19), timed("LSTM small 2x200", LSTM, model="lstm-small"),
               timed("LSTM medium 2x650", LSTM[:2], model="lstm-medium")]
    html = render_html(recs(records), anchors=[zaremba])
    assert "time to lit. valid" in section(html, "time-to-target")
    found = rows(html)
    assert "15.0 min (valid ppl 120.7)" in found["LSTM small 2x200"]
    assert "not reached (valid ppl 120.7; best valid ppl 147.0)" in found["LSTM medium 2x650"]
    # without such a figure the column is not shown
    assert "time to lit. valid" not in render_html(recs(records), anchors=[])


def test_character_data_reads_in_nats_per_char():
    def char(r):
        r["dataset"]["level"] = "char"
        r["metrics"]["valid"]["nll"] = math.log(r["metrics"]["valid"]["ppl"])
        return r

    records = [char(kn("KN 8-gram", 4.2)), char(timed("LSTM", [(60.0, 5.0, 1e5),
                                                               (120.0, 4.3, 2e5)]))]
    html = render_html(recs(records), anchors=[])
    assert f"{math.log(4.2 * 1.05):.3f} nats/char" in section(html, "time-to-target")
    assert "2.0 min" in rows(html)["LSTM"]


# ---- the benchmark's file -----------------------------------------------------------------


def benchmark(**changes):
    """A time-to-ppl.json as ``lmladder.perf.time_to_ppl --out`` writes it."""
    data = {"target": 120.7, "threads": 1, "together": True, "runs": [
        {"program": "lmladder", "recipe": "LSTM small 2x200, tied, AdamW",
         "points": [{"valid_ppl": 180.0, "seconds": 300.0, "tokens": 1_000_000},
                    {"valid_ppl": 119.5, "seconds": 900.0, "tokens": 3_000_000},
                    {"valid_ppl": 112.0, "seconds": 1500.0, "tokens": 5_000_000}],
         "reached": 900.0, "not_before": 300.0, "test_ppl": 108.4, "exit": "finished"},
        {"program": "word_language_model example",
         "recipe": "its defaults: LSTM 2x200 untied, SGD lr 20",
         "points": [{"epoch": 1, "valid_ppl": 160.0, "seconds": 1200.0},
                    {"epoch": 2, "valid_ppl": 120.1, "seconds": 2400.0}],
         "reached": 2400.0, "not_before": 1200.0, "test_ppl": None,
         "exit": "stopped at the target"}]}
    data.update(changes)
    return data


def write_results(folder, data):
    save(folder, kn("KN5", 141.19))
    save(folder, timed("LSTM small 2x200", LSTM))
    path = folder / TIME_TO_PPL
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return folder


def page(tmp_path, monkeypatch, data) -> str:
    monkeypatch.setattr(render, "shipped_anchors", lambda: [])
    results = write_results(tmp_path / "results", data)
    return render_report(results, tmp_path / "site" / "report.html",
                         reference=False).read_text()


def test_the_benchmark_is_shown_beside_its_datasets_table(tmp_path, monkeypatch):
    html = page(tmp_path, monkeypatch, benchmark(note="2 CPU cores, run together."))
    body = section(html, "time-to-target")
    assert body.index("time-to-target") < body.index('class="time-to-ppl"')
    caption = text(body)
    assert ("Each program timed to its first validation perplexity at or below 120.7 on ptb, "
            "1 thread each, run together in one session") in caption
    assert "2 CPU cores, run together." in caption
    table = body[body.index('class="time-to-ppl"'):]
    lines = [text(r) for r in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]]
    assert lines[0] == ("lmladder LSTM small 2x200, tied, AdamW 15.0 min not yet at 5.0 min "
                        "112.0 108.4 — finished")
    # ours / the example: 900 / 2400 s, and at most 900 / 1200 s against its earliest
    assert lines[1] == ("word_language_model example its defaults: LSTM 2x200 untied, SGD "
                        "lr 20 40.0 min not yet at 20.0 min 120.1 — 0.38× (at most 0.75× "
                        "against its earliest) stopped at the target")
    assert 'id="problems"' not in html


def test_a_run_that_did_not_reach_the_target_has_no_ratio(tmp_path, monkeypatch):
    data = benchmark()
    data["runs"][0].update(reached=None, not_before=None)
    data["runs"][0]["points"] = data["runs"][0]["points"][:1]
    html = page(tmp_path, monkeypatch, data)
    table = section(html, "time-to-target")
    table = table[table.index('class="time-to-ppl"'):]
    assert "not reached (best valid 180.0)" in text(table)
    assert "0.38" not in table


@pytest.mark.parametrize("data, problem", [
    ("{not json", "time-to-ppl.json: not JSON (Expecting property name enclosed in double "
                  "quotes at line 1)"),
    ([1, 2], "time-to-ppl.json: not a JSON object"),
    (benchmark(target="120.7"), "time-to-ppl.json: key 'target' is '120.7', not a finite "
                                "number"),
    ({k: v for k, v in benchmark().items() if k != "runs"},
     "time-to-ppl.json: key 'runs' is missing"),
    (benchmark(together="yes"), "time-to-ppl.json: key 'together' is str, not bool"),
    (benchmark(runs=[benchmark()["runs"][0], {**benchmark()["runs"][1], "reached": "soon"}]),
     "time-to-ppl.json: runs[1]: key 'reached' is 'soon', not a finite number"),
    (benchmark(runs=[{**benchmark()["runs"][0], "points": [{"seconds": 3.0}]}]),
     "time-to-ppl.json: runs[0].points[0]: key 'valid_ppl' is missing"),
])
def test_a_malformed_file_is_one_line_in_the_problems_never_a_crash(tmp_path, monkeypatch,
                                                                    data, problem):
    html = page(tmp_path, monkeypatch, data)
    problems = section(html, "problems")
    assert text(problems).count("time-to-ppl.json") == 1
    assert problem in text(problems).replace("&#39;", "'")
    assert 'class="time-to-ppl"' not in html
    assert 'time-to-target"' in html  # the rows' own table stays


def test_reading_the_file(tmp_path):
    assert read_benchmark(tmp_path) == (None, "")  # no file, no problem
    (tmp_path / TIME_TO_PPL).write_text(json.dumps(benchmark(dataset="wikitext-2")))
    bench, problem = read_benchmark(tmp_path)
    assert problem == "" and bench.dataset == "wikitext-2" and bench.target == 120.7
    assert [r.program for r in bench.runs] == ["lmladder", "word_language_model example"]
    assert bench.runs[1].test_ppl is None and bench.runs[0].reached == 900.0
    with pytest.raises(BenchmarkError, match=r"runs\[0\]: key 'program' is int, not str"):
        parse_benchmark(benchmark(runs=[{**benchmark()["runs"][0], "program": 3}]))
    with pytest.raises(BenchmarkError, match="'target' is 1, not a perplexity above 1"):
        parse_benchmark(benchmark(target=1))


def test_the_benchmark_shows_only_beside_its_own_dataset():
    bench = parse_benchmark(benchmark(dataset="wikitext-2"))
    html = render_html(recs([kn("KN5", 141.19), timed("LSTM", LSTM)]), anchors=[],
                       time_to_ppl=bench)
    assert 'class="time-to-ppl"' not in html
    html = render_html(recs([kn("KN5", 141.19)]), anchors=[],
                       time_to_ppl=parse_benchmark(benchmark()))
    assert 'class="time-to-ppl"' in html  # no timed row, yet the benchmark is shown


# ---- iteration counts ---------------------------------------------------------------------


def hmm(states, ppl, *, passes, stopped_by, history_key="pass", notes_passes=True,
        family="HMM", **kw):
    history = [{history_key: i + 1, "steps": 10 * (i + 1), "train_nll": 6.0,
                "seconds": 10.0 * (i + 1), "valid_nll": math.log(ppl) + 0.01 * (passes - i)}
               for i in range(passes)]
    notes = {"stopped_by": stopped_by, **({"passes": passes} if notes_passes else {})}
    record = make(f"HMM {states} states", ppl=ppl, family=family, model="hmm",
                  fit={"train_tokens": passes * TRAIN_TOKENS, "steps": 10 * passes,
                       "seconds": 10.0 * passes, "history": history, "notes": notes},
                  budget={"seconds": 180}, **kw)
    record["cell"]["config"] = {"states": states, "max_iterations": 150}
    return record


def test_iterations_come_from_the_notes_or_the_history_never_the_family():
    (torch_hmm,) = recs([hmm(256, 200.0, passes=9, stopped_by="budget")])
    t = training(torch_hmm)
    assert t.iterations == 9 and t.verdict == "not converged"
    assert t.planned.startswith("9 / 150 iterations, 90 steps, 9 epochs")
    assert t.amount.startswith("9 iterations, 9 epochs")
    # hmmlearn's EM numbers its iterations in the history; any family name
    (em,) = recs([hmm(16, 300.0, passes=1, stopped_by="converged", history_key="iteration",
                      notes_passes=False, family="whatever")])
    assert training(em).iterations == 1 and training(em).amount.startswith("1 iteration,")
    # a neural fit counts steps, not iterations
    (lstm,) = recs([timed("LSTM", LSTM)])
    assert training(lstm).iterations is None and "iteration" not in training(lstm).planned


def test_the_trained_column_and_the_hmm_figure_show_iteration_counts():
    records = [hmm(16, 330.0, passes=10, stopped_by="patience"),
               hmm(64, 250.0, passes=17, stopped_by="patience"),
               hmm(256, 190.0, passes=9, stopped_by="budget")]
    html = render_html(recs(records), anchors=[])
    board = section(html, "results-by-dataset")
    assert ">10 / 150 iterations, 100 steps, 10 epochs, 100 s of 180 s · converged<" in board
    figure = board[board.index('aria-label="ptb: HMM test ppl against states"'):]
    figure = figure[:figure.index("</svg>")]
    labels = dict(re.findall(r'id="[^"]*lmlabel-(s0h?\.\d)"[^>]*>.*?<text[^>]*>([^<]+)</text>',
                             figure, re.S))
    # filled markers (lmpoints-s0) converged; hollow ones (lmpoints-s0h) did not
    assert labels == {"s0.0": "16 states · 10 it.", "s0.1": "64 states · 17 it.",
                      "s0h.0": "256 states · 9 it."}
