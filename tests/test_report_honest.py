"""Issue 21, section 3: a report that cannot mislead.

The page opens with one headline table (family × dataset, the best converged row, literature,
× literature, training actual / planned); the summary opens with the budget where it cut rows
short; flagged rows (not converged, unknown, under one epoch) are never a best row; labels name
the model and budgets have their own column; unigram and uniform rows are shown and rows worse
than the unigram row are greyed and never ranked; task scores carry their interval and item
count; learning-curve rows have a table of their own.  Records are built by hand.
"""

import re

from lmladder.reports.anchors import Anchor
from lmladder.reports.render import render_html
from tests.test_report_page import TRAIN_TOKENS, make, neural_fit, recs, section

LSTM_LIT = Anchor("ptb", "metrics.test.ppl", 114.5, "LSTM small 2x200", "RNN",
                  "Zaremba et al. 2014, Table 1")
KN5_LIT = Anchor("ptb", "metrics.test.ppl", 141.2, "KN5 (interpolated Kneser-Ney 5-gram)",
                 "n-gram", "Mikolov 2012, Table 4.1")
OTHER_SPLIT = Anchor("ptb", "metrics.test.ppl", 60.0, "LSTM on another split", "RNN",
                     "Somebody 2019", note="another test split", comparable=False)


def cut_short(label, ppl, *, epochs=0.02, steps=7, model="lstm", family="RNN", **kw):
    """A neural row cut by a 180 s budget after ``steps`` of 5,000 planned steps."""
    fit = {"train_tokens": int(epochs * TRAIN_TOKENS), "steps": steps, "seconds": 179.0,
           "history": [{"step": steps, "valid_nll": 6.0}], "notes": {"epochs": epochs}}
    return make(label, ppl=ppl, model=model, family=family, fit=fit,
                budget={"steps": 5000, "seconds": 180}, **kw)


def converged(label, ppl, *, model, family="RNN", epochs=3.0):
    return make(label, ppl=ppl, model=model, family=family,
                fit=neural_fit(epochs, stopped_by="patience"), budget={"seconds": 600})


def table_rows(html: str) -> list[str]:
    return re.findall(r"<tr[^>]*>.*?</tr>", html, re.S)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


def test_the_page_opens_with_the_headline_table_of_converged_rows():
    records = [make("KN5", ppl=141.19, family="n-gram", model="kn5"),
               cut_short("LSTM small 2x200 (5,000 steps)", 90.0),  # better, but flagged
               converged("LSTM small 2x200", 120.0, model="lstm-small")]
    html = render_html(recs(records), anchors=[KN5_LIT, LSTM_LIT])
    assert html.index('id="headline"') < html.index('id="summary"') < html.index('id="overview"')
    rows = {re.search(r"<td[^>]*>[^<]*</td><td[^>]*>([^<]+)</td>", r).group(1): text(r)
            for r in table_rows(section(html, "headline"))[1:]}
    assert set(rows) == {"RNN", "n-gram"}
    # the flagged 90.0 row is never the best converged row
    # the two LSTM rows share a label once the budget leaves it: what differs is in brackets
    assert "LSTM small 2x200 [model=lstm-small] 120.00 test ppl 114.5 1.05×" in rows["RNN"]
    assert "· converged" in rows["RNN"] and "90.00" not in rows["RNN"]
    assert "KN5 141.19 test ppl 141.2 1.00× 1 epoch" in rows["n-gram"]


def test_a_family_without_a_converged_row_names_its_best_flagged_row():
    html = render_html(recs([cut_short("baby GPT (5,000 steps)", 900.0, model="gpt",
                                       family="Transformer")]), anchors=[])
    (row,) = table_rows(section(html, "headline"))[1:]
    assert ("⚠ no converged row; best flagged: baby GPT 900.00 (not converged, under 1 epoch: "
            "7 / 5,000 steps, 0.02 epochs, cut at 180 s)") in text(row)


def test_the_summary_opens_with_the_budget_and_the_overview_states_threads_and_caps():
    records = [cut_short("LSTM", 900.0), cut_short("GPT", 950.0, model="gpt",
                                                   family="Transformer"),
               make("KN5", ppl=141.19, family="n-gram", budget={"seconds": 180})]
    html = render_html(recs(records), anchors=[])
    summary = text(section(html, "summary"))
    first = summary.index("budget")
    assert summary.index("at 180 s on 1 thread no RNN or Transformer row reached 1 epoch") \
        < summary.index("best of this run")
    assert first < summary.index("best of this run")
    overview = text(section(html, "overview"))
    assert "threads per cell 1 thread (every cell); the machine had 2 CPU cores" in overview
    assert "fit budget (planned) 180 s, 5,000 steps: 2 cells; 180 s: 1 cell" in overview
    assert "limits per cell no time limit, no memory limit (every cell)" in overview
    # a converged run has no budget line
    calm = render_html(recs([converged("LSTM", 100.0, model="lstm")]), anchors=[])
    assert "reached 1 epoch" not in section(calm, "summary")


def test_the_budget_line_names_token_budgets_and_tells_reference_rows_apart():
    fit = {"train_tokens": 80000, "steps": 125, "seconds": 1.0,
           "history": [{"step": 125, "valid_nll": 6.8}], "notes": {"epochs": 0.086}}
    own = make("LSTM", ppl=900.0, model="lstm", family="RNN", fit=fit, budget={"tokens": 80000})
    shipped = cut_short("GPT", 950.0, model="gpt", family="Transformer")
    html = render_html(recs([own]), reference_records=recs([shipped]), anchors=[])
    summary = text(section(html, "summary"))
    mine = summary.index("at 80,000 tokens on 1 thread no RNN row reached 1 epoch")
    assert mine < summary.index("reference run at 180 s on 1 thread no Transformer row reached")


def test_under_one_epoch_and_unknown_verdicts_are_flagged_in_the_table():
    # the WikiText-2 LSTM of the issue: 0.015 epochs, no validation history, budget not spent
    fit = {"train_tokens": 30_800, "steps": 44, "seconds": 155.0,
           "history": [{"step": 10, "loss": 9.0}], "notes": {"epochs": 0.015}}
    lstm = make("LSTM 2x650 tied, dropout 0.5 (20 epochs)", ppl=1588.4, fit=fit,
                budget={"seconds": 180})
    lstm["cell"]["config"]["max_epochs"] = 20
    html = render_html(recs([lstm, make("KN5", ppl=220.0, family="n-gram")]), anchors=[])
    board = section(html, "results-by-dataset")
    board = board[:board.index("<details")]  # the model cards quote the cell as recorded
    (row,) = [r for r in table_rows(board) if ">LSTM 2x650 tied, dropout 0.5</td>" in r]
    assert "(20 epochs)" not in board  # the label names the model only
    assert ">44 steps, 0.015 / 20 epochs, 155 s of 180 s<" in row  # actual / planned
    assert '<span class="flag">⚠ convergence unknown, under 1 epoch</span>' in row


def test_lit_columns_and_not_comparable_figures_as_footnotes():
    html = render_html(recs([converged("LSTM small 2x200", 229.0, model="lstm")]),
                       anchors=[LSTM_LIT, OTHER_SPLIT])
    board = section(html, "results-by-dataset")
    heads = re.findall(r"<th[^>]*>([^<]+)<", board)
    assert heads[3:6] == ["test ppl", "lit.", "× lit."]
    (row,) = [r for r in table_rows(board) if r.startswith('<tr class="own">')]
    assert re.search(r'data-value="114.5" title="LSTM small 2x200, Zaremba et al. 2014">114.5<',
                     row)
    assert ">2.00×<" in row
    assert "LSTM on another split" not in "".join(table_rows(board))  # never a row, never ranked
    assert ("Not comparable, never ranked: LSTM on another split, test ppl 60 (<cite><span "
            'title="Somebody 2019">Somebody 2019</span></cite>): another test split') in board


def test_baseline_rows_are_shown_and_rows_worse_than_unigram_are_greyed_and_not_ranked():
    records = [make("Uniform", ppl=10_000.0, model="uniform", family="n-gram"),
               make("Unigram", ppl=640.0, model="unigram", family="n-gram"),
               make("KN5", ppl=141.2, model="kn5", family="n-gram"),
               converged("Transformer", 967.0, model="transformer", family="Transformer")]
    html = render_html(recs(records), anchors=[])
    board = section(html, "results-by-dataset")
    rows = table_rows(board[:board.index("<details")])[1:]
    order = [re.search(r'title="[^"]*">([^<]+)', r).group(1).strip() for r in rows]
    assert order == ["KN5", "Unigram", "Transformer", "Uniform"]  # greyed rows last
    greyed = [r for r in rows if 'class="own greyed' in r]
    assert len(greyed) == 2 and all("worse than unigram · not ranked" in r for r in greyed)
    assert all('class="best"' not in r for r in greyed)
    assert sum('<span class="badge base">baseline</span>' in r for r in rows) == 2
    summary = text(section(html, "summary"))
    assert ("ptb: 2 rows worse than the unigram row (test ppl 640.00) are greyed and not "
            "ranked: Transformer, Uniform") in summary
    # never the headline's best row: the Transformer family has none
    assert "⚠ every row is worse than the unigram row" in text(section(html, "headline"))


def test_task_scores_show_their_interval_and_items_and_rank_by_the_tasks_first_metric():
    specs = [{"name": n, "higher_is_better": n != "greedy_repetition", "chance": None}
             for n in ("greedy_bleu", "greedy_chrf", "greedy_repetition")]

    def with_tasks(label, model, chrf, bleu):
        r = make(label, ppl=150.0, model=model, family="n-gram")
        r["api_version"] = 4
        r["tasks"] = {
            "cloze": {"status": "ok", "accuracy": 0.64, "accuracy_ci95": [0.613, 0.672],
                      "items": 1000, "metrics": [{"name": "accuracy", "higher_is_better": True,
                                                  "chance": 0.2}]},
            "continuation": {"status": "ok", "prompts": 100, "greedy_bleu": bleu,
                             "greedy_chrf": chrf, "greedy_repetition": 0.8, "metrics": specs}}
        return r

    html = render_html(recs([with_tasks("KN5", "kn5", 11.4, 3.5),
                             with_tasks("Const", "const", 9.0, 4.4)]), anchors=[])
    tasks = section(html, "task-scores")
    cloze = tasks[tasks.index("ptb — cloze"):tasks.index("ptb — continuation")]
    assert ">0.64 [0.613, 0.672]</td>" in cloze
    assert re.search(r"<th>items<br><small>scored</small></th>", cloze)
    assert 'data-value="1000">1,000</td>' in cloze
    cont = tasks[tasks.index("ptb — continuation"):]
    heads = re.findall(r"<th[^>]*>([^<]+)<", cont)
    assert heads[4:7] == ["greedy_bleu", "greedy_repetition", "greedy_chrf"]  # after the rank
    assert re.findall(r'title="[^"]*">(KN5|Const)<', cont) == ["Const", "KN5"]  # by BLEU
    assert ">100</td>" in cont  # prompts


def test_learning_curve_rows_have_their_own_table_outside_the_detail_toggle():
    def share(fraction, ppl):
        r = make("KN5", ppl=ppl, model="kn5", family="n-gram")
        r["cell"]["fraction"] = fraction
        r["dataset"]["splits"]["train"]["tokens"] = int(TRAIN_TOKENS * fraction)
        r["fit"]["train_tokens"] = int(TRAIN_TOKENS * fraction)
        r["key"] = f"{fraction:016.4f}".replace(".", "0")[-16:]
        return r

    html = render_html(recs([share(1.0, 141.2), share(0.25, 217.4), share(0.5, 173.7)]),
                       anchors=[])
    board = section(html, "results-by-dataset")
    board = board[:board.index("<details")]
    main, curve = board.split("<h4>ptb: learning curves</h4>")
    assert len(table_rows(main)) == 2 and "217.40" not in main
    rows = table_rows(curve)[1:]
    assert [re.search(r'data-value="([\d.]+)">[\d.]+</td>', r).group(1) for r in rows] == [
        "0.25", "0.5", "1.0"]
    assert all(" detail" not in r.split(">")[0] for r in rows)


def test_the_constant_output_is_a_greyed_baseline_row_and_rows_below_it_are_marked():
    specs = [{"name": n, "higher_is_better": n != "greedy_repetition", "chance": None}
             for n in ("greedy_chrf", "greedy_bleu", "greedy_repetition")]
    output = "the <unk> of the <unk> / the <unk> of the <unk> / the"

    def with_continuation(label, model, chrf, constant_chrf=10.0):
        r = make(label, ppl=150.0, model=model, family="n-gram")
        r["api_version"] = 4
        r["tasks"] = {"continuation": {
            "status": "ok", "prompts": 100, "seed": 0, "greedy_chrf": chrf, "greedy_bleu": 1.0,
            "greedy_repetition": 0.5, "constant_chrf": constant_chrf,
            "constant_chrf_ci95": [9.1, 10.9], "constant_bleu": 4.38,
            "constant_output": output, "metrics": specs}}
        return r

    html = render_html(recs([with_continuation("KN5", "kn5", 11.4),
                             with_continuation("KN3", "kn3", 9.0)]), anchors=[])
    cont = section(html, "task-scores")
    rows = table_rows(cont)[1:-1]  # the header and the chance row left out
    labels = [re.search(r'class="fam[^"]*" title="[^"]*">([^<]+)<', r).group(1).strip()
              for r in rows]
    # the baseline stands where its chrF puts it, between the row above and the row below it
    assert labels == ["KN5", "constant output: “the &lt;unk&gt; of the &lt;unk&gt; / the "
                      "&lt;unk&gt; of …”", "KN3"]
    kn5, constant, kn3 = rows
    # a baseline is ranked among the rows (issue 22); without per-item statistics, untested
    assert 'class="constant greyed baseline"' in constant and "scored on the same items" in constant
    assert '<td class="rank" data-value="2" title="untested: ' in constant
    assert ">10 [9.1, 10.9]</td>" in constant and ">4.38</td>" in constant
    assert 'class="best"' in kn5 and 'class="best"' not in constant + kn3
    assert "below the constant output" in kn3 and "below the constant output" not in kn5
    assert "1 row scores below it on greedy_chrf" in text(cont)
    assert ("continuation greedy_chrf: 1 of 2 rows score below the constant output "
            "(“the <unk> of the <unk> / the <unk> of …” for every item, 10): KN3") in text(
                section(html, "summary")).replace("&lt;", "<").replace("&gt;", ">")


def test_translation_reads_its_constant_scores_by_their_own_names():
    from lmladder.reports.leaderboard import TASK_BASELINES, baseline_mean, below_baseline
    from lmladder.reports.rows import aggregate, task_specs

    r = make("LSTM", ppl=150.0, model="lstm")
    r["api_version"] = 4
    r["tasks"] = {"translation": {
        "status": "ok", "sentences": 1000, "seed": 0, "bleu": 1.2, "chrf": 20.5,
        "constant_bleu": 2.16, "constant_chrf": 18.0, "constant_output": "Ein Mann .",
        "metrics": [{"name": n, "higher_is_better": True, "chance": None}
                    for n in ("bleu", "chrf")]}}
    (row,) = aggregate(recs([r]))
    bleu, chrf = task_specs([row], "translation")
    constant = TASK_BASELINES[0]
    assert constant.kind == "constant"
    assert baseline_mean(row, "translation", "bleu", constant) == 2.16
    assert below_baseline(row, "translation", bleu, constant)
    assert not below_baseline(row, "translation", chrf, constant)
