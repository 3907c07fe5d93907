"""The reference runs that ship with lmladder (``reports/reference/``, made by
``python -m lmladder.reference_runs``): readable records of every full matrix, with the
provenance a reader needs to trust them, and their committed report, whose numbers a fresh
render of the records reproduces."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter

from lmladder.reference_runs import COMMAND, DATA_DIR, MATRICES, UNCAPPED, make_portable
from lmladder.reports.reference import REFERENCE
from lmladder.reports.render import render_report
from lmladder.results import read_record, scan_records
from lmladder.run import load_matrix, select_cells


def test_every_full_matrix_has_reference_records_with_provenance():
    scan = scan_records(REFERENCE)
    assert not scan.unreadable, scan.unreadable
    by_matrix = Counter(r.cell.matrix for r in scan.records)
    for name in MATRICES:
        cells = select_cells(load_matrix(name))
        assert by_matrix[name] == len(cells), (name, by_matrix[name], len(cells))
    for r in scan.records:
        prov = r.provenance
        assert re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"]) and prov["git_dirty"] is False
        if r.cell.matrix not in UNCAPPED:
            assert r.cell.budget.get("seconds", 0) <= 180, r.cell.budget
        assert r.ok or r.error.message, r.label


def _strings(value):
    if isinstance(value, dict):
        yield from (s for v in value.values() for s in _strings(v))
    elif isinstance(value, list):
        yield from (s for v in value for s in _strings(v))
    elif isinstance(value, str):
        yield value


def test_shipped_records_name_no_path_of_the_machine_that_made_them():
    for path in REFERENCE.glob("*/*.json"):
        machine_paths = [s for s in _strings(json.loads(path.read_text()))
                         if re.match(r"/[\w.-]+/", s)]
        assert not machine_paths, (path.name, machine_paths)


def test_make_portable_replaces_the_data_folder_and_the_program(tmp_path):
    source = next((REFERENCE / "ptb").glob("KN3__*.json"))
    record = json.loads(source.read_text())
    record["dataset"]["source"]["root"] = "/home/me/corpora"
    record["provenance"]["argv"] = ["/opt/x/reference.py", "--data-dir", "/home/me/corpora",
                                    "--max-seconds", "180"]
    (tmp_path / source.name).write_text(json.dumps(record))
    assert make_portable(tmp_path) == 1
    fixed = read_record(tmp_path / source.name)
    assert fixed.dataset["source"]["root"] == DATA_DIR
    assert fixed.provenance["argv"] == [COMMAND, "--data-dir", DATA_DIR, "--max-seconds", "180"]
    assert COMMAND == "python -m lmladder.reference_runs"
    assert fixed.metrics == record["metrics"]
    assert make_portable(tmp_path) == 0  # nothing left to rewrite


def test_portable_argv_names_no_path():
    from lmladder.reference_runs import portable_argv

    argv = ["/venv/bin/lmladder", "-v", "run", "cpu-ladder", "--results", "/tmp/ladder",
            "--data-dir", "/data", "--only", "uniform", "/home/me/m.toml"]
    assert portable_argv(argv) == ["lmladder", "-v", "run", "cpu-ladder", "--results",
                                   "<results>", "--data-dir", DATA_DIR, "--only", "uniform",
                                   "<path>"]
    kept = ["python -m lmladder.reports.reference", "--data-dir", DATA_DIR]
    assert portable_argv(kept) == kept and portable_argv([]) == []


def test_the_reference_report_is_committed_and_shows_every_dataset():
    html = (REFERENCE / "report.html").read_text(encoding="utf-8")
    for dataset in ("ptb", "wikitext-2", "tinyshakespeare"):
        assert dataset in html
    assert "<svg" in html and 'class="sortable' in html


def test_a_users_ptb_report_shows_the_reference_rows_unless_told_not_to(tmp_path):
    from lmladder.cli import main

    (tmp_path / "res").mkdir()  # the user's run: one KN3 cell on the same PTB
    shutil.copy(next((REFERENCE / "ptb").glob("KN3__*.json")), tmp_path / "res")
    assert main(["report", str(tmp_path / "res")]) == 0
    html = (tmp_path / "res" / "report.html").read_text()
    assert "lmladder reference run, commit" in html and "LSTM small 2x200 (Zaremba)" in html
    assert main(["report", str(tmp_path / "res"), "--no-reference", "-o",
                 str(tmp_path / "plain.html")]) == 0
    plain = (tmp_path / "plain.html").read_text()
    assert "lmladder reference run, commit" not in plain
    assert "LSTM small 2x200 (Zaremba)" not in plain


def _number(text: str):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def test_the_shipped_records_render_the_committed_numbers(tmp_path):
    """The committed exports are what the records render today: the Markdown and LaTeX tables
    line for line, and every field of the typed CSV (numbers compared as numbers)."""
    out = render_report(REFERENCE, tmp_path / "report.html")
    for name in ("results.md", "results.tex"):
        assert (tmp_path / name).read_text() == (REFERENCE / name).read_text(), name
    fresh = list(csv.DictReader((tmp_path / "results.csv").open(encoding="utf-8")))
    committed = list(csv.DictReader((REFERENCE / "results.csv").open(encoding="utf-8")))
    assert len(fresh) == len(committed) > 30
    for new, old in zip(fresh, committed, strict=True):
        assert {k: _number(v) for k, v in new.items()} == {k: _number(v) for k, v in old.items()}
    html = out.read_text()
    assert "Files that could not be read" not in html


def test_the_rendered_test_perplexities_are_the_records_own(tmp_path):
    """Independently of the committed files: the rendered CSV has one own row per record of the
    whole training split, and its test_ppl is that record's ``metrics.test.ppl``, read from
    the JSON directly."""
    render_report(REFERENCE, tmp_path / "report.html")
    by_key = {}
    for path in REFERENCE.glob("*/*.json"):
        data = json.loads(path.read_text())
        if data["status"] == "ok" and data["cell"].get("fraction", 1.0) == 1.0:
            by_key[data["key"]] = (data["cell"]["dataset"], data["cell"]["model"],
                                   data["metrics"]["test"]["ppl"])
    rows = [r for r in csv.DictReader((tmp_path / "results.csv").open(encoding="utf-8"))
            if r["source"] == "own" and float(r["fraction"]) == 1]
    assert sorted(r["key"] for r in rows) == sorted(by_key)  # every record once, no other
    for row in rows:
        dataset, model, ppl = by_key[row["key"]]
        assert (row["dataset"], row["model"]) == (dataset, model)
        assert float(row["test_ppl"]) == ppl, row["label"]
    assert len(rows) >= 10
