"""Issue 22, "Significance" and "Chance for generation": task tables a reviewer cannot fault.

Rows of a task table are ranked with a paired bootstrap over the same items
(:mod:`lmladder.significance`): rows that cannot be told apart share a rank ("=1"), rows that
cannot be tested say "untested"; every row of rank 1 is bold.  A generation task's baselines
(its constant output, its source copied) are greyed rows ranked where their values put them,
and a row below either is flagged.  Records are built by hand, with per-item statistics made by
:func:`lmladder.significance.item_statistics` where they are BLEU's.
"""

import re

import numpy as np

from lmladder.reports.render import render_html
from lmladder.significance import item_statistics, paired_block, paired_entry, scores_of
from tests.test_report_page import make, recs, section

ITEMS = "sha256:" + "a" * 64  # the fingerprint of the items every row here is scored on
OTHER = "sha256:" + "b" * 64


def accuracy_record(label, hits, *, items=ITEMS, seed=0, n=200, paired=True):
    """A record of ``label`` whose cloze task got its first ``hits`` of ``n`` items right."""
    values = np.zeros(n)
    values[:hits] = 1.0
    r = make(label, ppl=150.0, model=label.lower(), family="n-gram", seed=seed)
    r["api_version"] = 4
    r["tasks"] = {"cloze": {
        "status": "ok", "accuracy": hits / n, "items": n, "seed": seed,
        "metrics": [{"name": "accuracy", "higher_is_better": True, "chance": 0.2}]}}
    if paired:
        r["tasks"]["cloze"]["paired"] = paired_block(
            items, accuracy=paired_entry("mean", values))
    return r


def table_rows(html: str) -> list[str]:
    return re.findall(r"<tr[^>]*>.*?</tr>", html, re.S)


def cells(row: str) -> list[str]:
    """The text of each cell of a table row, tags and spaces squeezed."""
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip()
            for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def task_rows(html: str, task: str) -> dict[str, str]:
    """The body rows of task ``task``'s table on ptb, by label."""
    tasks = section(html, "task-scores")
    part = tasks[tasks.index(f"ptb — {task}"):]
    part = part[:part.index("</table>")]
    return {re.search(r'class="fam[^"]*" title="[^"]*">([^<]+)<', r).group(1).strip()
            .replace("&#39;", "'"): r for r in table_rows(part)[1:-1]}


def rank_of(row: str) -> str:
    return cells(row)[0]


def as_text(html: str, task: str) -> str:
    """Task ``task``'s table as plain text, one row a line (for reading, and the report)."""
    tasks = section(html, "task-scores")
    part = tasks[tasks.index(f"ptb — {task}"):]
    part = part[:part.index("</table>") + len("</table>")]
    return "\n".join(" | ".join(cells(r)) for r in table_rows(part))


def test_rows_with_clearly_different_accuracies_rank_one_and_two():
    html = render_html(recs([accuracy_record("KN3", 100), accuracy_record("KN5", 150)]),
                       anchors=[])
    rows = task_rows(html, "cloze")
    assert list(rows) == ["KN5", "KN3"]
    assert rank_of(rows["KN5"]) == "1" and rank_of(rows["KN3"]) == "2"
    assert "untested" not in rows["KN5"] + rows["KN3"]
    assert re.search(r'title="significantly different from the row ranked 1 \(paired bootstrap '
                     r'over the same 200 items, p = 0\.00\d+\)"', rows["KN3"])
    assert 'class="best" data-value="0.75"' in rows["KN5"]
    assert 'class="best"' not in rows["KN3"]


def test_rows_with_the_same_statistics_share_rank_one_and_are_both_bold():
    html = render_html(recs([accuracy_record("KN5", 120), accuracy_record("KN4", 120),
                             accuracy_record("KN3", 60)]), anchors=[])
    rows = task_rows(html, "cloze")
    assert [rank_of(rows[k]) for k in ("KN5", "KN4", "KN3")] == ["=1", "=1", "3"]
    assert all('class="best" data-value="0.6"' in rows[k] for k in ("KN5", "KN4"))
    assert 'class="best"' not in rows["KN3"]
    tip = ("not significantly different from the row ranked 1 (paired bootstrap over the same "
           "200 items, p = 1)")
    assert tip in rows["KN4"] + rows["KN5"]
    tasks = section(html, "task-scores")
    assert "“=k” where the difference is not significant (p ≥ 0.05)" in re.sub(r"\s+", " ", tasks)
    summary = re.sub(r"\s+", " ", section(html, "summary"))
    assert re.search(r"cloze accuracy: best KN[45] 0\.6 \(rank 1 shared with KN[45]: not "
                     r"significantly different\)", summary)


def test_a_row_on_other_items_or_over_several_seeds_is_untested():
    records = [accuracy_record("KN5", 150), accuracy_record("KN4", 149, items=OTHER),
               accuracy_record("KN3", 100, seed=0), accuracy_record("KN3", 102, seed=1)]
    html = render_html(recs(records), anchors=[])
    rows = task_rows(html, "cloze")
    assert list(rows) == ["KN5", "KN4", "KN3"]
    assert [rank_of(rows[k]) for k in rows] == ["1", "2 untested", "3 untested"]
    assert 'title="untested: scored on other items than the row ranked 1"' in rows["KN4"]
    assert 'title="untested: a mean over 2 seeds"' in rows["KN3"]
    assert "“untested” (2 of 3 ranked rows)" in re.sub(r"\s+", " ", section(html, "task-scores"))


def continuation_record(label, chrf, *, copy=25.0, constant=10.0):
    """A continuation result with both baselines and no per-item statistics."""
    specs = [{"name": n, "higher_is_better": n != "greedy_repetition", "chance": None}
             for n in ("greedy_chrf", "greedy_repetition")]
    r = make(label, ppl=150.0, model=label.lower(), family="n-gram")
    r["api_version"] = 4
    r["tasks"] = {"continuation": {
        "status": "ok", "prompts": 100, "seed": 0, "greedy_chrf": chrf,
        "greedy_repetition": 0.5, "constant_chrf": constant, "constant_chrf_ci95": [9.0, 11.0],
        "constant_output": "the", "copy_chrf": copy, "copy_chrf_ci95": [23.5, 26.5],
        "copy_output": "the prompt's last 20 tokens", "metrics": specs}}
    return r


def test_the_copy_and_constant_baselines_are_greyed_rows_and_a_row_below_copy_is_flagged():
    html = render_html(recs([continuation_record("KN5", 30.0), continuation_record("KN3", 20.0)]),
                       anchors=[])
    rows = task_rows(html, "continuation")
    copy, constant = "copy: the prompt's last 20 tokens", "constant output: “the”"
    assert list(rows) == ["KN5", copy, "KN3", constant]  # placed by their chrF
    assert rows[copy].startswith('<tr class="copy greyed baseline">')
    assert rows[constant].startswith('<tr class="constant greyed baseline">')
    assert ">25 [23.5, 26.5]" in rows[copy] and ">10 [9, 11]" in rows[constant]
    assert "below the copy baseline" in rows["KN3"]
    assert "below the constant output" not in rows["KN3"]
    assert "below the" not in rows["KN5"]
    assert [rank_of(r) for r in rows.values()] == [
        "1 untested", "2 untested", "3 untested", "4 untested"]
    tasks = re.sub(r"\s+", " ", section(html, "task-scores"))
    assert ("The “copy” row gives each item its own source back (the prompt's last 20 tokens)"
            in tasks.replace("&#39;", "'"))
    assert "1 row scores below it on greedy_chrf (marked)" in tasks
    summary = re.sub(r"\s+", " ", section(html, "summary")).replace("&#39;", "'")
    assert ("continuation greedy_chrf: 1 of 2 rows score below the copy baseline (the prompt's "
            "last 20 tokens, 25): KN3") in summary


REFERENCES = [f"the {w} sat on the mat near door number {i} ." for i, w in enumerate(
    ["cat", "dog", "man", "bird", "child", "woman", "horse", "mouse", "fox", "cow"] * 3)]


def bleu_record(label, hypotheses, *, constant=None):
    """A translation-like task ranked by BLEU alone, with sacrebleu's per-sentence statistics;
    ``constant``: the constant output's hypotheses, scored beside it."""
    stats = item_statistics("bleu", hypotheses, REFERENCES)
    score = float(scores_of("bleu", stats.sum(0), len(REFERENCES))[0])
    r = make(label, ppl=150.0, model=label.lower(), family="RNN")
    r["api_version"] = 4
    result = {"status": "ok", "sentences": len(REFERENCES), "seed": 0, "bleu": score,
              "metrics": [{"name": "bleu", "higher_is_better": True, "chance": None}]}
    entries = {"bleu": paired_entry("bleu", stats)}
    if constant is not None:
        cstats = item_statistics("bleu", constant, REFERENCES)
        result["constant_bleu"] = float(scores_of("bleu", cstats.sum(0), len(REFERENCES))[0])
        result["constant_output"] = constant[0]
        entries["constant_bleu"] = paired_entry("bleu", cstats)
    result["paired"] = paired_block(ITEMS, **entries)
    r["tasks"] = {"translation": result}
    return r


def test_bleu_rows_with_sacrebleu_statistics_rank_by_the_paired_bootstrap():
    exact = REFERENCES
    close = [s.replace("mat", "rug") for s in REFERENCES]  # one word in ten wrong
    closer = [s.replace("the mat", "the rug") if i == 0 else s for i, s in enumerate(REFERENCES)]
    constant = ["the cat sat on the mat ."] * len(REFERENCES)
    html = render_html(recs([bleu_record("GPT", closer, constant=constant),
                             bleu_record("LSTM", close, constant=constant),
                             bleu_record("Oracle", exact, constant=constant)]), anchors=[])
    rows = task_rows(html, "translation")
    label = "constant output: “the cat sat on the mat .”"
    assert list(rows) == ["Oracle", "GPT", "LSTM", label]
    # one sentence of 30 differs between Oracle and GPT: not significant; LSTM and the constant
    # output are significantly below the rank above them
    assert [rank_of(r) for r in rows.values()] == ["=1", "=1", "3", "4"]
    assert all('class="best"' in rows[k] for k in ("Oracle", "GPT"))
    assert 'class="best"' not in rows["LSTM"] + rows[label]
    assert "below the constant output" not in "".join(rows.values())
    assert ">100</td>" in rows["Oracle"] and 'data-value="30">30</td>' in rows["Oracle"]
    assert "paired bootstrap over the same 30 items" in rows["LSTM"]


def test_an_old_record_without_paired_or_copy_renders_as_before_its_rows_untested():
    old = [accuracy_record("KN5", 150, paired=False), accuracy_record("KN3", 100, paired=False)]
    for r in old:
        r["tasks"]["continuation"] = continuation_record("x", 12.0)["tasks"]["continuation"]
        for key in ("copy_chrf", "copy_chrf_ci95", "copy_output"):
            del r["tasks"]["continuation"][key]
    old[1]["tasks"]["continuation"]["greedy_chrf"] = 8.0
    html = render_html(recs(old), anchors=[])
    cloze = task_rows(html, "cloze")
    assert [rank_of(r) for r in cloze.values()] == ["1 untested", "2 untested"]
    assert 'title="untested: no per-item statistics in its record"' in cloze["KN5"]
    assert 'class="best" data-value="0.75"' in cloze["KN5"]
    cont = task_rows(html, "continuation")
    assert list(cont) == ["KN5", "constant output: “the”", "KN3"]
    assert not any(k.startswith("copy") for k in cont)
    assert "below the constant output" in cont["KN3"]
    assert "The “copy” row" not in section(html, "task-scores")


def test_a_table_reads_as_text():
    """The rendered table of the tie test, as text: rank, label, seeds, source, score, count."""
    html = render_html(recs([accuracy_record("KN5", 120), accuracy_record("KN4", 120),
                             accuracy_record("KN3", 60),
                             accuracy_record("KN2", 58, items=OTHER)]), anchors=[])
    text = as_text(html, "cloze")
    print(text)
    trained = "1 epoch, 10 s · closed form"
    assert [" ".join(line.split()) for line in text.splitlines()] == [
        "rank | model | seeds | from | accuracy ↑ higher is better | items scored | trained "
        "actual / planned",
        f"=1 | KN4 | 1 | this run | 0.6 | 200 | {trained}",  # equal values: in the rows' order
        f"=1 | KN5 | 1 | this run | 0.6 | 200 | {trained}",
        f"3 | KN3 | 1 | this run | 0.3 | 200 | {trained}",
        f"4 untested | KN2 | 1 | this run | 0.29 | 200 | {trained}",
        "| chance | | | 0.2 | |"]


def test_results_csv_carries_each_rows_task_rank_and_its_marks():
    from lmladder.reports.exports import csv_text, record_rows
    from lmladder.reports.rows import Context

    ctx = Context(recs([accuracy_record("KN5", 120), accuracy_record("KN4", 120),
                        accuracy_record("KN3", 60), accuracy_record("KN2", 58, items=OTHER)]))
    rows = {r["label"]: r for r in record_rows(ctx)}
    assert {k: (r["task_cloze_rank"], r["task_cloze_rank_note"]) for k, r in rows.items()} == {
        "KN5": (1, "tied"), "KN4": (1, "tied"), "KN3": (3, ""), "KN2": (4, "untested")}
    assert ',0.3,3,""\n' in csv_text(list(rows.values()))  # the rank a bare int


def test_tie_tests_give_ranks_with_the_p_values_they_tested():
    from lmladder.significance import tie_tests

    same = paired_entry("mean", [1.0] * 120 + [0.0] * 80)
    worse = paired_entry("mean", [1.0] * 60 + [0.0] * 140)
    rows = [(0.3, worse, ITEMS), (0.6, same, ITEMS), (0.6, same, ITEMS), (0.29, worse, OTHER),
            (0.1, None, None)]
    tests = tie_tests(rows, higher_is_better=True)
    assert [rank for rank, _ in tests] == [3, 1, 1, 4, 5]
    assert tests[1][1] is None and tests[2][1] == 1.0  # the first row is tested by no one
    assert tests[0][1] < 0.05 and tests[3][1] is None and tests[4][1] is None


def chrf_record(label, hypotheses):
    """A continuation result on REFERENCES with chrF statistics for the row and both baselines
    (a constant sentence; each reference less its first two words as the copy)."""
    outputs = {"greedy_chrf": hypotheses,
               "constant_chrf": ["the cat sat on the mat ."] * len(REFERENCES),
               "copy_chrf": [" ".join(s.split()[2:]) for s in REFERENCES]}
    r = make(label, ppl=150.0, model=label.lower(), family="n-gram")
    r["api_version"] = 4
    result = {"status": "ok", "prompts": len(REFERENCES), "seed": 0,
              "constant_output": "the cat sat on the mat .",
              "copy_output": "the prompt's last 20 tokens",
              "metrics": [{"name": "greedy_chrf", "higher_is_better": True, "chance": None}]}
    entries = {}
    for key, hyps in outputs.items():
        stats = item_statistics("chrf", hyps, REFERENCES)
        result[key] = float(scores_of("chrf", stats.sum(0), len(REFERENCES))[0])
        entries[key] = paired_entry("chrf", stats)
    result["paired"] = paired_block(ITEMS, **entries)
    r["tasks"] = {"continuation": result}
    return r


def test_baselines_are_tested_against_the_rows_and_a_tie_with_one_is_not_significant():
    good = [s.replace("mat", "rug") for s in REFERENCES]
    fair = [s.replace("mat", "rug").replace("near", "by") if i % 2 else s.replace("mat", "rug")
            for i, s in enumerate(REFERENCES)]
    poor = [" ".join(s.split()[:4]) for s in REFERENCES]
    html = render_html(recs([chrf_record("KN5", good), chrf_record("KN4", fair),
                             chrf_record("KN3", poor)]), anchors=[])
    rows = task_rows(html, "continuation")
    copy = "copy: the prompt's last 20 tokens"
    constant = "constant output: “the cat sat on the mat .”"
    assert list(rows) == ["KN5", copy, "KN4", constant, "KN3"]
    assert [rank_of(r) for r in rows.values()] == ["=1", "=1", "3", "=4", "=4"]
    assert "not significantly different from the row ranked 1" in rows[copy]
    assert "below the copy baseline<" in rows["KN4"]  # significantly below it
    assert ("below the constant output, not significantly; below the copy baseline<"
            in rows["KN3"])
    assert 'class="best"' in rows["KN5"] and 'class="best"' not in rows[copy]  # greyed


def test_a_cross_validation_figure_stands_beside_cross_validated_rows_only():
    """Wang & Manning's 77.9 is 10-fold CV: a literature row in an rt-polarity table that holds a
    CV row, a footnote beside fixed-split rows only."""
    from lmladder.reports.anchors import load_anchors

    anchors = [a for a in load_anchors() if a.metric == "tasks.rt-polarity.accuracy"]
    cv_figure = next(a for a in anchors if a.protocol == "10-fold CV")

    def table(protocol: str) -> str:
        r = accuracy_record("unigram", 156)
        task = r["tasks"].pop("cloze")
        task.update(protocol=protocol, metrics=[
            {"name": "accuracy", "higher_is_better": True, "chance": 0.5}])
        r["tasks"]["rt-polarity"] = task
        html = render_html(recs([r]), anchors=anchors)
        part = section(html, "task-scores")
        return part[part.index("rt-polarity"):]

    fixed, cv = table("fixed split"), table("10-fold CV")
    literature_row = re.compile(r'<tr[^>]*literature[^>]*>.*?' + re.escape(cv_figure.model), re.S)
    assert literature_row.search(cv) and not literature_row.search(fixed)
    assert cv_figure.model in fixed  # still there, as a footnote


def test_a_tasks_metrics_come_from_this_runs_rows_before_the_references():
    """Older reference records list continuation's chrF first; this run's order (BLEU first)
    decides what ranks the table."""
    from lmladder.reports.rows import Row, task_specs

    def with_order(label, names):
        r = make(label, ppl=150.0, model=label.lower(), family="n-gram")
        r["api_version"] = 4
        r["tasks"] = {"continuation": {"status": "ok", "prompts": 10, **{n: 1.0 for n in names},
                                       "metrics": [{"name": n, "higher_is_better": True,
                                                    "chance": None} for n in names]}}
        return recs([r])[0]

    old = with_order("Ref", ["greedy_chrf", "greedy_bleu"])
    new = with_order("Mine", ["greedy_bleu", "greedy_chrf"])
    rows = [Row("a", "r", "ptb", [old], kind="reference"), Row("b", "r", "ptb", [new])]
    assert [s.name for s in task_specs(rows, "continuation")] == ["greedy_bleu", "greedy_chrf"]
