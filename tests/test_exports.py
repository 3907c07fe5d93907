"""The exports beside the report (lmladder.reports.exports, lmladder.reports.latex): results.md
one table per dataset with learning curves apart and flagged rows marked, results.tex as booktabs
with every special character escaped, results.csv typed and safe to open in a spreadsheet, and
the README's pandas example run on the shipped PTB records."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from lmladder.reports.anchors import Anchor
from lmladder.reports.exports import (
    CSV_COLUMNS,
    EXPORT_FILES,
    MAIN_HEADER,
    csv_text,
    dataset_tables,
    markdown_escape,
    markdown_tables,
    neutralise,
    record_rows,
    trained_text,
    write_exports,
)
from lmladder.reports.latex import latex_escape, latex_text
from lmladder.reports.reference import REFERENCE
from lmladder.reports.render import context
from lmladder.reports.rows import Context
from lmladder.results import parse_record, scan_records

ROOT = Path(__file__).resolve().parent.parent
TRAIN = 100_000  # tokens of the made-up training split


def make(label, *, ppl, seed=0, fraction=1.0, config=None, family="RNN", fit=None,
         budget=None, used=None, level="word", bpc=None, dataset="ptb"):
    """A checked ok record of ``label`` with test perplexity ``ppl`` (one experiment per
    ``config``; seeds of one config are one row)."""
    cell = {"matrix": "m", "model": label.split()[0].lower(), "label": label,
            "config": config if config is not None else {"name": label}, "dataset": dataset,
            "seed": seed, "device": "cpu", "budget": budget or {"seconds": 180}, "scoring": {},
            "threads": 1, "fraction": fraction, "tasks": []}
    metrics = {"test": {"ppl": ppl, "nll": 5.0, "bpc": bpc or 1.5},
               "valid": {"ppl": ppl * 1.05, "nll": 5.1, "bpc": (bpc or 1.5) * 1.02}}
    record = {
        "api_version": 4, "status": "ok", "error": None, "cell": cell,
        "budget_used": used or {"tokens": None, "steps": None, "seconds": 180 * fraction},
        "model": {"class": f"x:{label}", "revision": 1, "parameters": 4_653_200,
                  "family": family},
        "dataset": {"name": dataset, "level": level, "vocab_size": 10_000,
                    "vocab_sha256": "a" * 64,
                    "splits": {"train": {"tokens": int(TRAIN * fraction)}}},
        "metrics": metrics, "timing": {"fit_s": 10.0},
        "fit": fit if fit is not None else {"train_tokens": int(TRAIN * fraction), "steps": 1,
                                            "history": [], "notes": {}},
        "provenance": {"date": "2026-12-01T10:00:00+00:00", "git_commit": "1" * 40,
                       "cpu_count": 2, "versions": {"lmladder": "0.2.0"}},
        "protocol": {}, "tasks": {},
    }
    record["key"] = hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]
    return parse_record(record)


def cut_fit(epochs, *, stopped_by="budget", steps=90, seconds=179.0):
    """A neural fit stopped by its budget after ``epochs`` passes."""
    return {"train_tokens": int(epochs * TRAIN), "steps": steps, "seconds": seconds,
            "history": [], "notes": {"epochs": epochs, "stopped_by": stopped_by}}


def anchor(model, value, family, *, comparable=True, metric="metrics.test.ppl"):
    return Anchor("ptb", metric, value, model, family, f"{model.split()[0]} 2012, Table 1",
                  url="https://example.org/paper", comparable=comparable,
                  note="" if comparable else "another test set")


ANCHORS = [anchor("KN5 (interpolated Kneser-Ney 5-gram)", 141.2, "n-gram"),
           anchor("LSTM small 2x200", 114.5, "RNN"),
           anchor("AWD-LSTM", 57.3, "RNN"),
           anchor("KN5 on another corpus", 99.0, "n-gram", comparable=False)]


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the Markdown table under ``## heading``, as cells."""
    lines = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    body = [line for line in lines if line.startswith("| ")][1:]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in body]


@pytest.fixture(scope="module")
def shipped_ptb():
    """The context of the shipped PTB reference records, as the report of that folder sees it."""
    return context(scan_records(REFERENCE / "ptb").records, [], None)


# ---- results.md ----------------------------------------------------------------------------------


def test_one_table_per_dataset_with_the_columns_and_rounding(shipped_ptb):
    tables = dataset_tables(shipped_ptb)
    assert [t.key for t in tables] == ["ptb", "ptb-curve"]
    assert tables[0].header == MAIN_HEADER == [
        "Model", "Params", "Trained", "Valid", "Test", "Lit.", "× Lit."]
    md = markdown_tables(tables)
    assert "| Model | Params | Trained | Valid | Test | Lit. | × Lit. |" in md
    rows = {r[0]: r for r in table_rows(md, "ptb: test ppl, lower is better")}
    # KN5 on all of PTB: 141.19 rounded to one decimal, beside Mikolov's 141.2
    assert rows["KN5"] == ["KN5", "3.84M", "1 epoch", "148.0", "141.2", "141.2", "1.00×"]
    # a learning curve's points are not in the leaderboard, but in a table of their own
    assert not any("fraction" in name for name in rows)
    curve = table_rows(md, "ptb: learning curves (test ppl against the share of training data)")
    kn5 = [r for r in curve if r[0] == "KN5"]
    assert [r[1] for r in kn5] == ["0.0625", "0.125", "0.25", "0.5", "1"]
    assert kn5[-1][-1] == "141.2"


def test_char_data_is_shown_in_bpc_with_three_decimals():
    records = [make("KN 8-gram of characters", ppl=4.95, bpc=2.30634, level="char",
                    family="n-gram", dataset="shakespeare"),
               make("LSTM char", ppl=5.72, bpc=2.5165, level="char", dataset="shakespeare")]
    md = markdown_tables(dataset_tables(Context(records)))
    rows = table_rows(md, "shakespeare: test bpc, lower is better")
    assert [r[4] for r in rows] == ["2.306", "2.517"]
    assert [r[3] for r in rows] == ["2.352", "2.567"]  # valid bpc: 1.02 × test here


def test_seeds_are_averaged_with_their_spread():
    records = [make("LSTM small", ppl=100.0, seed=0), make("LSTM small", ppl=110.0, seed=1)]
    md = markdown_tables(dataset_tables(Context(records)))
    (row,) = table_rows(md, "ptb: test ppl, lower is better")
    assert row[4] == "105.0 ± 7.1"


def test_flagged_rows_are_marked_and_explained():
    records = [
        make("LSTM cut", ppl=200.0, fit=cut_fit(0.4)),                    # budget, < 1 epoch
        make("LSTM long", ppl=150.0, fit=cut_fit(3.0)),                   # budget
        make("LSTM done", ppl=120.0, fit=cut_fit(3.0, stopped_by="patience")),
        make("LSTM short", ppl=180.0, fit=cut_fit(0.5, stopped_by="patience")),  # < 1 epoch
        make("LSTM odd", ppl=300.0,  # no stop reason, no validation history: unknown
             fit={"train_tokens": 30_000, "steps": 44, "history": [], "notes": {}}),
        make("KN5", ppl=141.0, family="n-gram"),                          # counted
    ]
    table = dataset_tables(Context(records, anchors=ANCHORS))[0]
    names = [r[0] for r in table.rows]
    assert names == ["LSTM done", "KN5", "LSTM long ⚠", "LSTM short ⚠", "LSTM cut ⚠",
                     "LSTM odd ⚠"]
    notes = [n.text for n in table.notes]
    assert "⚠ LSTM cut: not converged: budget spent; under 1 epoch." in notes
    assert "⚠ LSTM long: not converged: budget spent." in notes
    assert "⚠ LSTM short: under 1 epoch." in notes
    assert "⚠ LSTM odd: convergence unknown; under 1 epoch." in notes


def test_trained_reads_planned_over_actual():
    steps = make("baby GPT", ppl=30.0, budget={"steps": 5000, "seconds": 180},
                 used={"tokens": None, "steps": 5000, "seconds": 180},
                 fit=cut_fit(0.11, steps=7, seconds=180.0))
    assert trained_text(steps) == "7 / 5,000 steps, cut at 180 s"
    epochs = make("LSTM", ppl=100.0, config={"max_epochs": 6.0},
                  fit=cut_fit(6.0, stopped_by="patience", seconds=60.0))
    assert trained_text(epochs) == "6.0 / 6.0 epochs"
    tokens = make("T", ppl=100.0, budget={"tokens": 200_000},
                  used={"tokens": 100_000, "steps": None, "seconds": None},
                  fit=cut_fit(1.0, seconds=5.0))
    assert trained_text(tokens) == "100,000 / 100,000 tokens"  # the budget as applied
    assert trained_text(make("KN5", ppl=141.0, family="n-gram")) == "1 epoch"


def test_literature_columns_and_notes():
    records = [make("KN5", ppl=141.19, family="n-gram"), make("LSTM small 2x200", ppl=229.0),
               make("HMM 64 states", ppl=245.0, family="HMM")]
    table = dataset_tables(Context(records, anchors=ANCHORS))[0]
    rows = {r[0]: r for r in table.rows}
    assert rows["KN5"][5:] == ["141.2", "1.00×"]
    assert rows["LSTM small 2x200"][5:] == ["114.5", "2.00×"]
    assert rows["HMM 64 states"][5:] == ["—", "—"]
    notes = {n.text: n.url for n in table.notes}
    assert notes["Literature, no row here: AWD-LSTM, metrics.test.ppl = 57.3 (AWD-LSTM 2012)."] \
        == "https://example.org/paper"
    # a figure on another test set is a note, never a column value
    assert ("Literature, not comparable: KN5 on another corpus, metrics.test.ppl = 99.0 "
            "(KN5 2012; another test set).") in notes
    assert all("99.0" not in cell for r in table.rows for cell in r)


def test_reference_rows_carry_a_dagger_and_their_origin():
    own = [make("KN5", ppl=141.19, family="n-gram")]
    ref = [make("LSTM small", ppl=120.0, config={"ref": 1},
                fit=cut_fit(13.0, stopped_by="patience"))]
    ctx = Context(own, ref, [])
    table = dataset_tables(ctx)[0]
    assert [r[0] for r in table.rows] == ["LSTM small †", "KN5"]
    assert any(n.text.startswith("† lmladder reference run, commit 1111111") for n in table.notes)
    assert {r["label"]: r["source"] for r in record_rows(ctx)} == {"KN5": "own",
                                                                  "LSTM small": "reference"}


def test_markdown_cells_are_taken_literally():
    assert markdown_escape("a|b *c* _d_ <script> [x](y) `z`\nnext") == (
        r"a\|b \*c\* \_d\_ &lt;script&gt; \[x\](y) \`z\` next")
    records = [make("LSTM | 2 layers <b>", ppl=100.0)]
    md = markdown_tables(dataset_tables(Context(records)))
    (row,) = table_rows(md, "ptb: test ppl, lower is better")
    assert len(row) == 7 and row[0] == r"LSTM \| 2 layers &lt;b&gt;"


# ---- results.tex ---------------------------------------------------------------------------------

HOSTILE = r"50% of #1 & $x_{i}^2$ ~ \relax {"


def test_latex_escapes_every_special_character():
    assert latex_escape("& % $ # _ { } ~ ^ \\") == (
        r"\& \% \$ \# \_ \{ \} \textasciitilde{} \textasciicircum{} \textbackslash{}")
    assert latex_escape("2.1 ± 0.3 × lit. – ⚠ †") == (
        r"2.1 $\pm$ 0.3 $\times$ lit. -- \textsuperscript{*} \textsuperscript{\dag}")
    assert latex_escape("Zaremba é 🙂") == "Zaremba é ?"  # beyond T1 fonts: a placeholder


def _unescaped(text: str, char: str) -> int:
    return len(re.findall(r"(?<!\\)" + re.escape(char), text))


def test_latex_tables_are_well_formed_booktabs():
    records = [make(HOSTILE, ppl=100.0), make("KN5", ppl=141.19, family="n-gram"),
               make("KN5", ppl=200.0, family="n-gram", fraction=0.5)]
    tex = latex_text(dataset_tables(Context(records, anchors=ANCHORS)), title="R&D_1")
    assert tex.startswith("\\documentclass{article}") and tex.rstrip().endswith(
        "\\end{document}")
    assert "\\usepackage{booktabs}" in tex and "\\section*{R\\&D\\_1}" in tex
    for env in ("table", "tabular", "minipage", "document"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}")
    assert tex.count("\\begin{tabular}") == 2  # the leaderboard and the learning curve
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == 2
    for body in re.findall(r"\\midrule\n(.*?)\n\\bottomrule", tex, re.S):
        for line in body.splitlines():
            assert line.endswith(" \\\\")
            columns = 7 if _unescaped(line, "&") == 6 else 6
            assert _unescaped(line, "&") == columns - 1, line
    hostile = next(line for line in tex.splitlines() if line.startswith("50"))
    assert hostile.startswith(r"50\% of \#1 \& \$x\_\{i\}\textasciicircum{}2\$ "
                              r"\textasciitilde{} \textbackslash{}relax \{")
    # braces balance once the escaped ones are taken out; no $ opens math by accident
    plain = tex.replace("\\{", "").replace("\\}", "")
    assert plain.count("{") == plain.count("}")
    assert _unescaped(tex, "$") % 2 == 0
    assert _unescaped(tex, "%") == 0 and _unescaped(tex, "#") == 0


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path):
    records = [make(HOSTILE, ppl=100.0), make("KN5", ppl=141.19, family="n-gram")]
    (tmp_path / "results.tex").write_text(latex_text(dataset_tables(Context(records))))
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           "results.tex"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]


# ---- results.csv ---------------------------------------------------------------------------------

EVIL = ['=HYPERLINK("http://x")', "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_text_cells_never_start_a_formula():
    assert neutralise('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert neutralise("+cmd") == "'+cmd" and neutralise(-1.5) == -1.5
    assert neutralise("KN5") == "KN5" and neutralise("\tx") == "'\tx"
    assert neutralise("\rx") == "'\rx"
    records = [make(label, ppl=100.0 + i) for i, label in enumerate(EVIL)]
    ctx = Context(records)
    text = csv_text(record_rows(ctx))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["label"] for r in rows) == sorted(
        ("'" if row.label[0] in "=+-@" else "") + row.label for row in ctx.rows)
    assert {r["label"] for r in rows} >= {'\'=HYPERLINK("http://x")', "'+cmd", "'-2+3"}
    assert {r["model"] for r in rows} >= {'\'=hyperlink("http://x")', "'+cmd"}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), value
            assert not value.startswith("-") or re.fullmatch(r"-[\d.e+-]+", value), value


def test_csv_text_is_quoted_text_and_bare_numbers():
    rows = [{"label": 'a,"b"\r\nc', "x": 1.5, "n": 3, "y": None},
            {"label": "-1", "x": -2.0, "n": None, "y": None}]
    text = csv_text(rows)
    assert text.splitlines()[0] == '"label","x","n","y"'
    back = list(csv.DictReader(io.StringIO(text, newline="")))
    assert back == [{"label": 'a,"b"\r\nc', "x": "1.5", "n": "3", "y": ""},
                    {"label": "'-1", "x": "-2.0", "n": "", "y": ""}]
    frame = pd.read_csv(io.StringIO(text))
    assert frame["x"].tolist() == [1.5, -2.0] and frame["n"].dtype.kind == "f"
    assert frame["label"].tolist() == ['a,"b"\r\nc', "'-1"] and frame["y"].isna().all()


def test_csv_is_typed_one_row_per_seed(tmp_path):
    records = [make("LSTM small", ppl=100.0, seed=0), make("LSTM small", ppl=110.0, seed=1),
               make("KN5", ppl=141.19, family="n-gram"),
               make("KN5", ppl=217.44, family="n-gram", fraction=0.25)]
    paths = write_exports(Context(records, anchors=ANCHORS), tmp_path)
    assert [p.name for p in paths] == list(EXPORT_FILES) and all(p.is_file() for p in paths)
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns[:len(CSV_COLUMNS)]) == [name for name, _, _ in CSV_COLUMNS]
    for name, kind, _ in CSV_COLUMNS:
        if kind is not str and frame[name].notna().any():
            assert pd.api.types.is_numeric_dtype(frame[name]), name
    assert frame["seed"].dtype.kind == "i" and frame["params"].dtype.kind == "i"
    lstm = frame[frame["label"] == "LSTM small"]
    assert sorted(lstm["seed"]) == [0, 1] and set(lstm["n_seeds"]) == {2}
    assert lstm["test_ppl"].mean() == 105.0
    assert lstm["test_ppl_std"].iloc[0] == pytest.approx(7.0710678)
    kn5 = frame[(frame["model"] == "kn5") & (frame["fraction"] == 1)].iloc[0]
    assert kn5["test_ppl"] == 141.19 and kn5["lit_value"] == 141.2
    assert kn5["x_lit"] == pytest.approx(141.19 / 141.2) and kn5["token"] == "word"
    assert kn5["lit_metric"] == "metrics.test.ppl" and kn5["verdict"] == "closed form"
    curve = frame[frame["fraction"] == 0.25].iloc[0]
    assert pd.isna(curve["lit_value"]) and curve["train_tokens"] == 25_000


def test_shipped_records_export_every_file(shipped_ptb, tmp_path):
    write_exports(shipped_ptb, tmp_path)
    frame = pd.read_csv(tmp_path / "results.csv")
    assert len(frame) == sum(len(row.records) for row in shipped_ptb.rows)
    assert "\\begin{tabular}{lrlrrrr}" in (tmp_path / "results.tex").read_text()
    md = (tmp_path / "results.md").read_text()
    assert md.count("\n## ") == 2 and "[fraction=" not in md.split("learning curves")[0]


# ---- the README's pandas example ----------------------------------------------------------------


def readme_pandas_example() -> str:
    """The README's fenced Python block that reads results with pandas."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "pd.read_csv" in b]
    return block


def test_the_readme_pandas_example_gives_kn5_its_own_perplexity(shipped_ptb, tmp_path):
    """Run the README's snippet as written on the shipped PTB records (their folder in place of
    results/quick): KN5 is 141.19, not the mean over its learning curve (227.4)."""
    folder = tmp_path / "quick"
    shutil.copytree(REFERENCE / "ptb", folder)
    write_exports(shipped_ptb, folder)
    code = readme_pandas_example()
    assert code.count('"results/quick') == 2
    scope = {}
    exec(code.replace('"results/quick', f'"{folder}'), scope)  # noqa: S102 - our own README
    assert scope["test_ppl"].loc["KN5", "ptb"] == pytest.approx(141.19, abs=0.005)
    assert scope["leaderboard"].loc[("ptb", "KN5"), "test_ppl"] == pytest.approx(141.19, abs=0.005)
    assert scope["leaderboard"].loc[("ptb", "KN5"), "epochs"] == 1
    every = scope["runs"].query("status == 'ok'")
    naive = every.pivot_table(index="label", columns="dataset", values="test_ppl")
    assert naive.loc["KN5", "ptb"] == pytest.approx(227.4, abs=0.05)  # as the README says
