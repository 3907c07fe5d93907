"""The report page of issue 10: summary first, training amount and convergence on every row,
reference and literature rows beside the user's, sortable compact leaderboards, exports.

Records are built by hand (no model runs): only the fields the page reads are filled in.
"""

import copy
import csv
import hashlib
import json
import re

import pytest

from lmladder.reports import plots, render
from lmladder.reports.anchors import Anchor
from lmladder.reports.render import (
    distance,
    matching_reference,
    reference_caption,
    render_html,
    render_report,
    training,
)
from lmladder.results import parse_record, record_path, write_record

PTB_SHA = "a" * 64
TRAIN_TOKENS = 929_589  # PTB's training split, tokens


def make(label, *, ppl, model=None, family="RNN", dataset="ptb", sha=PTB_SHA, seed=0,
         budget=None, fit=None, date="2026-11-27T10:00:00+00:00", commit="1b8af45" + "0" * 33,
         cores=2, params=1_000_000, score=10_000.0, train=5_000.0, matrix="quick"):
    """A successful record of ``label`` on ``dataset`` with test perplexity ``ppl``."""
    cell = {"matrix": matrix, "model": model or label.lower().split()[0], "label": label,
            "config": {"size": params}, "dataset": dataset, "seed": seed, "device": "cpu",
            "budget": budget or {}, "scoring": {}, "threads": 1, "fraction": 1.0}
    record = {
        "api_version": 3, "status": "ok", "error": None, "cell": cell,
        "budget_used": budget or {},
        "model": {"class": f"x:{label}", "revision": 1, "parameters": params, "family": family},
        "dataset": {"name": dataset, "level": "word", "vocab_size": 10_000, "vocab_sha256": sha,
                    "splits": {"train": {"tokens": TRAIN_TOKENS}, "test": {"tokens": 82_430}}},
        "metrics": {"test": {"ppl": ppl, "nll": 1.0}, "valid": {"ppl": ppl * 1.05}},
        "throughput": {"score_tokens_per_s": score, "train_tokens_per_s": train},
        "timing": {"fit_s": 10.0},
        "fit": fit if fit is not None else {"train_tokens": TRAIN_TOKENS, "steps": 1,
                                            "history": [], "notes": {}},
        "provenance": {"date": date, "git_commit": commit, "cpu_count": cores,
                       "versions": {"lmladder": "0.2.0"}},
        "protocol": {}, "tasks": {},
    }
    record["key"] = hashlib.sha256(json.dumps([cell, commit], sort_keys=True).encode()
                                   ).hexdigest()[:16]
    return record


def recs(records):
    """The JSON records as the report receives them: read and checked."""
    return [parse_record(r) for r in records]


def neural_fit(epochs=0.6, valid=(6.0, 5.5), stopped_by=None):
    """A neural fit cut by its budget: validation losses ``valid`` (nats/token) at the end."""
    notes = {"epochs": epochs}
    if stopped_by:
        notes["stopped_by"] = stopped_by
    history = [{"step": 10 * (i + 1), "valid_nll": v} for i, v in enumerate(valid)]
    return {"train_tokens": int(epochs * TRAIN_TOKENS), "steps": 10 * len(valid),
            "seconds": 11.9, "history": history, "notes": notes}


def anchor(model, value, family, *, metric="metrics.test.ppl", comparable=True, note=""):
    return Anchor("ptb", metric, value, model, family, f"{model.split()[0]} 2012, Table 1",
                  url="https://example.org/paper", note=note, comparable=comparable)


ANCHORS = [anchor("KN5 (interpolated Kneser-Ney 5-gram)", 141.2, "n-gram"),
           anchor("LSTM small 2x200", 114.5, "RNN"),
           anchor("LSTM medium 2x650", 82.7, "RNN"),
           anchor("KN5 on MSR", 0.40, "n-gram", metric="tasks.cloze.accuracy", comparable=False,
                  note="MSR sentence completion, not lmladder's cloze")]


def section(html: str, anchor_id: str) -> str:
    start = html.index(f'id="{anchor_id}"')
    end = html.find("<section", start)
    return html[start:end if end > 0 else len(html)]


def rows_of(html: str, label: str) -> list[str]:
    """The table rows whose first cell is exactly ``label``."""
    return re.findall(rf"<tr[^>]*><td[^>]*>{re.escape(label)}</td>.*?</tr>", html, re.S)


# ---- training(): one verdict per case ---------------------------------------------------------


@pytest.mark.parametrize(("fit", "verdict", "reason"), [
    (neural_fit(2.0, stopped_by="patience"), "converged", "validation stopped improving"),
    (neural_fit(2.0, stopped_by="converged"), "converged", "tolerance"),
    (neural_fit(2.0, stopped_by="tol"), "converged", "tolerance"),
    (neural_fit(2.0, stopped_by="budget", valid=(6.0, 6.0)), "not converged", "budget spent"),
    (neural_fit(2.0, stopped_by="max_iterations"), "not converged", "iteration limit"),
    (neural_fit(2.0, valid=(6.0, 5.5)), "not converged", "still improving"),
    (neural_fit(2.0, valid=(6.0, 5.999)), "converged", "flat"),
    ({"train_tokens": TRAIN_TOKENS, "steps": 1, "history": []}, "closed form", "one pass"),
    ({"train_tokens": 0, "steps": 0, "history": []}, "not trained", "zero-shot"),
    ({"train_tokens": 5000, "steps": 40, "history": [{"step": 40, "loss": 6.0}]}, "unknown",
     "does not say"),
])
def test_training_verdicts(fit, verdict, reason):
    t = training(parse_record(make("M", ppl=100.0, fit=fit)))
    assert t.verdict == verdict and reason in t.reason
    # "unknown" is flagged too (and this one trained 0.005 epochs); zero-shot is neither
    assert t.flagged == (verdict in ("not converged", "unknown"))
    assert t.converged == (verdict in ("converged", "closed form"))
    assert t.flag.startswith("⚠ ") == t.flagged


def _checked_at(tokens, valid):
    """A fit whose history checks validation ``valid`` after ``tokens`` training tokens."""
    history = [{"step": i + 1, "tokens": t, "valid_nll": v}
               for i, (t, v) in enumerate(zip(tokens, valid, strict=True))]
    return {"train_tokens": tokens[-1], "steps": len(tokens), "seconds": 9.0,
            "history": history, "notes": {"epochs": tokens[-1] / TRAIN_TOKENS}}


@pytest.mark.parametrize(("tokens", "valid", "verdict"), [
    # 0.011 nats over 0.6 epochs: 0.018 per epoch, another epoch is worth < 2 %: converged
    ((4 * TRAIN_TOKENS, 4.6 * TRAIN_TOKENS), (4.700, 4.689), "converged"),
    # the same gain over 0.1 epoch: 0.11 per epoch, cut short
    ((4 * TRAIN_TOKENS, 4.1 * TRAIN_TOKENS), (4.700, 4.689), "not converged"),
    # a loss that went up: flat at the end
    ((2 * TRAIN_TOKENS, 3 * TRAIN_TOKENS), (4.700, 4.710), "converged"),
])
def test_still_improving_is_measured_per_epoch_where_the_history_counts_tokens(tokens, valid,
                                                                                verdict):
    t = training(parse_record(make("M", ppl=100.0, fit=_checked_at(tokens, valid))))
    assert t.verdict == verdict and "per epoch" in t.reason


@pytest.mark.parametrize("stopped_by", ["patience", "converged", "tol", None])
def test_a_row_under_one_epoch_is_flagged_whatever_its_verdict(stopped_by):
    valid = (6.0, 5.999) if stopped_by is None else (6.0, 5.5)
    t = training(parse_record(make("M", ppl=100.0, fit=neural_fit(0.6, valid, stopped_by))))
    assert t.verdict == "converged" and t.short
    assert t.flagged and not t.converged
    assert t.flag.startswith("⚠ under 1 epoch: 0.6 epochs, 20 steps")


def test_converged_needs_a_whole_epoch_where_epochs_are_known():
    def verdict(fit):
        return training(parse_record(make("M", ppl=100.0, fit=fit)))
    assert verdict(neural_fit(1.0, stopped_by="patience")).converged
    assert not verdict(neural_fit(0.99, stopped_by="patience")).converged
    # counted on half the split (a token budget): closed form, but not a whole pass
    half = verdict({"train_tokens": TRAIN_TOKENS // 2, "steps": 1, "history": []})
    assert half.verdict == "closed form" and not half.converged and half.flagged
    # no epochs known: the verdict decides
    assert verdict({"steps": 5, "history": [], "notes": {"stopped_by": "tol"}}).converged


def test_a_spent_budget_without_validation_history_is_not_converged():
    fit = {"train_tokens": 57_600, "steps": 90, "seconds": 11.7,
           "history": [{"step": 90, "valid_nll": 6.7}], "notes": {"epochs": 0.062}}
    t = training(parse_record(make("LSTM", ppl=700.0, fit=fit, budget={"seconds": 12})))
    assert (t.verdict, t.reason, t.budget) == ("not converged", "budget spent", "12 s")
    assert t.flag == "⚠ not converged, under 1 epoch: 0.062 epochs, 90 steps, budget spent"
    assert t.planned == "90 steps, 0.062 epochs, cut at 12 s"


def test_epochs_come_from_the_notes_else_tokens_over_the_train_split():
    assert training(parse_record(make("A", ppl=1.0, fit=neural_fit(epochs=0.25)))).epochs == 0.25
    fit = {"train_tokens": 2 * TRAIN_TOKENS, "steps": 2, "history": [{"step": 1, "x": 1}]}
    assert training(parse_record(make("B", ppl=1.0, fit=fit))).epochs == 2.0


def test_distance_is_a_percentage_near_the_anchor_and_a_ratio_beyond():
    a = anchor("KN5", 141.2, "n-gram")
    assert distance(141.19, a) == "−0.01%"
    assert distance(260.3, anchor("LSTM", 114.5, "RNN")) == "2.3×"


# ---- summary -----------------------------------------------------------------------------------


def test_summary_names_the_best_row_and_the_distance_to_its_anchor():
    kn5 = make("KN5", ppl=141.19, family="n-gram", score=900_000.0)
    lstm = make("LSTM small", ppl=260.3, model="lstm", fit=neural_fit(0.6), score=9_000.0)
    html = render_html(recs([kn5, lstm]), anchors=ANCHORS)
    assert html.index('id="summary"') < html.index('id="overview"')
    top = section(html, "summary")
    assert "best of this run: KN5 test ppl 141.19" in top
    assert ("KN5 141.19 — literature 141.2 (KN5 (interpolated Kneser-Ney 5-gram), KN5 2012): "
            "−0.01%") in top
    # the published LSTM of the row's size; the row is flagged as under-trained
    assert ("LSTM small 260.30 — literature 114.5 (LSTM small 2x200, LSTM 2012): 2.3× — "
            "trained 0.6 epochs, 20 steps, not converged") in top
    assert "is 100× faster than LSTM small" in top
    medium = make("LSTM medium 2x650", ppl=95.0, model="lstm-medium", fit=neural_fit(2.0))
    top = section(render_html(recs([medium]), anchors=ANCHORS), "summary")
    assert "LSTM medium 2x650 95.00 — literature 82.7 (LSTM medium 2x650" in top  # its own size


def test_a_flagged_best_row_is_never_ranked_first_silently():
    rnn = make("RNN", ppl=90.0, fit=neural_fit(0.1))
    kn = make("KN3", ppl=150.0, family="n-gram")
    top = section(render_html(recs([rnn, kn]), anchors=[]), "summary")
    line = next(li for li in top.split("<li>") if li.startswith("best of this run"))
    assert "RNN test ppl 90.00 (⚠ not converged, under 1 epoch: 0.1 epochs" in line
    assert "best converged row: KN3 test ppl 150.00" in line


def test_failed_cells_are_one_summary_line_per_cause():
    message = ("dataset 'ptb' (Penn Treebank) is not on this machine.\n"
               "Put these files under one of the folders below (first match wins):\n"
               "  ptb/ptb.train.txt    sha256 00\n      from https://x/y\n"
               "  ptb/ptb.test.txt    sha256 11\n      from https://x/z\n"
               "Folders searched: /data, /cache\nChoose the folder with --data-dir DIR.")
    records = [make("KN5", ppl=10.0, dataset="synthetic")]
    for i in range(12):
        r = make(f"Model {i // 2}", ppl=1.0, model=f"m{i // 2}", seed=i % 2)
        r.update(status="skipped", error={"type": "DataNotFoundError", "message": message})
        records.append(r)
    html = render_html(recs(records), anchors=[])
    top = section(html, "summary")
    (line,) = [li for li in top.split("<li>") if "skipped:" in li]
    assert line.startswith("12 cells skipped: DataNotFoundError: dataset &#39;ptb&#39;")
    assert "put ptb/ptb.train.txt, ptb/ptb.test.txt under /data" in line
    problems = section(html, "failed-and-skipped-cells")
    assert problems.count("<li>") == 1 and "12 affected cells" in problems
    assert "Model 3 on ptb (cpu): seeds 0, 1" in problems
    assert problems.count("Folders searched") == 1  # the whole message once, collapsed
    one = make("LSTM large", ppl=1.0, model="lstm-large")
    one.update(status="failed", error={"type": "TimeLimit", "message": "exceeded 1800 s"})
    top = section(render_html(recs(records[:1] + [one]), anchors=[]), "summary")
    assert "1 cell failed (LSTM large on ptb (cpu): seed 0): TimeLimit: exceeded 1800 s" in top


# ---- leaderboards --------------------------------------------------------------------------------


def test_flagged_rows_carry_a_visible_flag_in_the_table():
    lstm = make("LSTM small", ppl=260.3, fit=neural_fit(0.06))
    kn = make("KN5", ppl=141.0, family="n-gram")
    html = render_html(recs([lstm, kn]), anchors=[])
    (row,) = rows_of(html, "LSTM small")
    assert ">20 steps, 0.06 epochs, 12 s<" in row  # actual (no plan in this budget)
    assert 'title="validation still improving' in row
    assert '<span class="flag">⚠ not converged, under 1 epoch</span>' in row
    (row,) = rows_of(html, "KN5")
    assert "not converged" not in row and "closed form" in row


def test_literature_rows_appear_with_their_source_as_a_link():
    html = render_html(recs([make("KN5", ppl=141.19, family="n-gram")]), anchors=ANCHORS)
    board = section(html, "results-by-dataset")
    (row,) = rows_of(board, "LSTM medium 2x650")
    assert row.startswith('<tr class="literature">') and "literature</span>" in row
    assert '<a href="https://example.org/paper"' in row and 'data-value="82.7"' in row
    # sorted by test ppl: the published LSTMs above the user's KN5, which is marked best
    assert board.index("LSTM medium 2x650") < board.index(">KN5</td>")
    (kn5,) = rows_of(board, "KN5")
    assert 'class="best" data-value="141.19"' in kn5


def test_a_not_comparable_anchor_is_shown_with_its_note_and_never_measured_against():
    r = make("KN5", ppl=141.19, family="n-gram")
    r["tasks"] = {"cloze": {"status": "ok", "accuracy": 0.64}}
    html = render_html(recs([r]), anchors=ANCHORS)
    tasks = section(html, "task-scores")
    # a footnote under the table, never a row of it
    assert ("Not comparable, never ranked: KN5 on MSR, tasks.cloze.accuracy 0.4" in tasks
            and ": MSR sentence completion, not lmladder&#39;s cloze</li>" in tasks)
    assert not rows_of(tasks, "KN5 on MSR")
    top = section(html, "summary")
    (line,) = [li for li in top.split("<li>") if li.startswith("cloze accuracy")]
    assert "best KN5 0.64; chance 0.2; literature 0.4 (KN5 on MSR" in line
    assert "not comparable" in line and "×" not in line and "%" not in line


def test_toggle_sortable_and_scroll_markup():
    html = render_html(recs([make("A", ppl=10.0), make("B", ppl=20.0, model="b")]),
                       anchors=[])
    assert '<meta name="viewport"' in html and 'id="show-detail"' in html
    board = section(html, "results-by-dataset")
    assert '<div class="scroll">\n<table class="sortable' in board
    assert re.search(r'<th class="detail"[^>]*>valid ppl', board)
    assert re.search(r'<th title="↓ lower is better">test ppl<br><small>per token</small>'
                     r'<br><small class="better">↓ lower is better</small></th>', board)
    assert 'data-value="10.0"' in board and 'data-value="20.0"' in board
    script = html[html.rindex("<script>"):]
    assert "aria-sort" in script and "table.sortable" in script and "data-value" in script
    assert ".scroll { overflow-x: auto" in html


def test_family_colours_are_css_classes_from_the_plots_palette():
    html = render_html(recs([make("KN5", ppl=141.0, family="n-gram")]), anchors=[])
    colour = plots.FAMILY_COLOURS["n-gram"]
    assert f"td.fam-n-gram::before {{ background: {colour}; }}" in html
    assert '<td class="fam fam-n-gram"' in html


# ---- reference rows ----------------------------------------------------------------------------


def reference_run():
    commit = "a77eeff" + "1" * 33
    same = make("LSTM small", ppl=120.0, fit=neural_fit(8.0, stopped_by="patience"),
                budget={"seconds": 180}, commit=commit, matrix="ptb")
    other_vocab = make("KN9 other corpus", ppl=1.0, sha="b" * 64, budget={"seconds": 180},
                       commit=commit, matrix="ptb")
    other_dataset = make("Shakespeare GPT", ppl=4.0, dataset="tinyshakespeare",
                         budget={"seconds": 180}, commit=commit, matrix="shakespeare")
    return [same, other_vocab, other_dataset]


def test_reference_rows_only_for_the_same_dataset_and_vocabulary_and_marked():
    mine = make("LSTM small", ppl=260.3, fit=neural_fit(0.06))
    html = render_html(recs([mine]), reference_records=recs(reference_run()), anchors=[])
    board = section(html, "results-by-dataset")
    fresh, ref = (rows_of(board, "LSTM small")[i] for i in (1, 0))  # sorted: 120 before 260
    assert fresh.startswith('<tr class="own">') and "260.30" in fresh and "this run" in fresh
    assert ref.startswith('<tr class="reference">') and "120.00" in ref
    assert ">reference</span>" in ref and "190.15" not in board  # never averaged together
    caption = ("lmladder reference run, commit a77eeff, 2 CPU cores, training capped at 180 s "
               "per cell")
    assert caption in board
    assert "KN9 other corpus" not in html and "Shakespeare GPT" not in html
    assert "best reference row: LSTM small test ppl 120.00" in section(html, "summary")


def test_the_reference_folder_report_does_not_show_its_records_twice():
    records = recs(reference_run())
    assert matching_reference(records, records) == []
    html = render_html(records, reference_records=records, anchors=[])
    assert len(rows_of(html, "LSTM small")) == 1 and 'class="reference"' not in html


def test_reference_caption_names_commits_cores_and_caps():
    a = make("A", ppl=1.0, budget={"seconds": 60}, commit="abcdef0123")
    b = make("B", ppl=1.0, budget={"seconds": 180, "tokens": 10_000}, commit="abcdef0123",
             cores=4)
    assert reference_caption(recs([a, b])) == (
        "lmladder reference run, commit abcdef0, 2–4 CPU cores, "
        "training capped at 60–180 s / 10,000 tokens per cell")


# ---- exports and resources ---------------------------------------------------------------------


def save(folder, r):
    record = parse_record(r)
    write_record(record_path(folder, record.cell, record.key), record)


def test_exports_are_written_beside_the_page_and_parse(tmp_path, monkeypatch):
    results = tmp_path / "results"
    for r in (make("KN5", ppl=141.19, family="n-gram"),
              make("LSTM small", ppl=260.3, fit=neural_fit(0.06))):
        save(results, r)
    monkeypatch.setattr(render, "load_reference", lambda: recs(reference_run()))
    monkeypatch.setattr(render, "shipped_anchors", lambda: ANCHORS[:2])
    out = render_report(results, tmp_path / "site" / "report.html")
    html = out.read_text()
    for name in ("results.csv", "results.md", "results.tex", "results.json"):
        assert f'href="{name}"' in html
        assert (out.parent / name).is_file()
    rows = list(csv.DictReader((out.parent / "results.csv").open(encoding="utf-8")))
    table = {(r["label"], r["source"]): r for r in rows}
    # one row per record; literature figures are columns of the row they match, not rows
    assert set(table) == {("KN5", "own"), ("LSTM small", "own"), ("LSTM small", "reference")}
    assert float(table[("KN5", "own")]["test_ppl"]) == 141.19
    assert table[("LSTM small", "own")]["verdict"] == "not converged"
    assert table[("LSTM small", "reference")]["verdict"] == "converged"
    assert table[("KN5", "own")]["lit_source"] == "KN5 2012, Table 1 <https://example.org/paper>"
    assert float(table[("KN5", "own")]["lit_value"]) == 141.2
    merged = json.loads((out.parent / "results.json").read_text())
    assert isinstance(merged, list) and len(merged) == 3  # two own records, one reference
    md = (out.parent / "results.md").read_text()
    assert "| Model | Params | Trained | Valid | Test | Lit. | × Lit. |" in md
    board = [line for line in md.splitlines() if line.startswith("| ") and "Model" not in line]
    assert [line.split(" | ")[0] for line in board] == [
        "| LSTM small †", "| KN5", "| LSTM small ⚠"]  # ranked by test ppl, flags marked
    assert "\\begin{tabular}" in (out.parent / "results.tex").read_text()


def test_render_report_without_reference_rows(tmp_path, monkeypatch):
    save(tmp_path / "r", make("LSTM small", ppl=260.3))
    monkeypatch.setattr(render, "load_reference", lambda: recs(reference_run()))
    html = render_report(tmp_path / "r", tmp_path / "a.html", reference=False).read_text()
    assert 'class="reference"' not in html
    html = render_report(tmp_path / "r", tmp_path / "b.html").read_text()
    assert 'class="reference"' in html


def test_the_page_loads_nothing_from_the_network():
    records = [make("KN5", ppl=141.19, family="n-gram"), make("LSTM", ppl=300.0)]
    html = render_html(recs(records), reference_records=recs(reference_run()),
                       anchors=ANCHORS)
    assert 'src="http' not in html and "url(http" not in html and "@import" not in html
    assert "<link" not in html and "<iframe" not in html
    for match in re.finditer(r'href="http', html):
        tag = html[html.rindex("<", 0, match.start()):match.start()]
        assert tag.startswith("<a "), tag  # citation links only, never a loaded resource


def test_many_rows_keep_one_figure_per_kind_per_dataset():
    records = [make(f"M{i}", ppl=100.0 + i, model=f"m{i}", seed=s)
               for i in range(30) for s in (0, 1)]
    html = render_html(recs(records), anchors=[])
    board = section(html, "results-by-dataset")
    assert board.count("<svg") <= 6
    assert len(re.findall(r'<tr class="own">', board)) == 30


def test_inputs_are_not_modified():
    records = recs([make("KN5", ppl=141.19, family="n-gram")])
    reference = recs(reference_run())
    before = copy.deepcopy((records, reference))
    render_html(records, reference_records=reference, anchors=ANCHORS)
    assert (records, reference) == before


def test_character_data_ranks_by_bpc_and_meets_its_nll_anchor():
    def chars(label, bpc, nll, model):
        r = make(label, ppl=3.0, model=model, dataset="tinyshakespeare", family="Transformer")
        r["dataset"]["level"] = "char"
        r["metrics"]["test"]["bpc"] = bpc
        r["metrics"]["valid"]["nll"] = nll
        return r

    gpt = Anchor("tinyshakespeare", "metrics.valid.nll", 1.4697, "nanoGPT baby GPT",
                 "Transformer", "Karpathy, nanoGPT README", comparable=True)
    html = render_html(recs([chars("Small", 2.5, 1.70, "a"), chars("Big", 2.2, 1.60, "b")]),
                       anchors=[gpt])
    top = section(html, "summary")
    assert "best of this run: Big test bpc 2.2000" in top
    assert ("best literature figure (valid nll): nanoGPT baby GPT 1.4697 (Karpathy); "
            "this run&#39;s best, Big 1.6000, is +8.87% of it") in top
    board = section(html, "results-by-dataset")
    assert board.index(">Big</td>") < board.index(">Small</td>")
    heads = re.findall(r"<th[^>]*>([^<]+)<", board)
    # compact, by quality; then the literature figure and measured / literature
    assert heads[3:8] == ["test bpc", "valid nll", "lit.", "× lit.", "parameters"]
