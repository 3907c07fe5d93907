"""The reference runs that ship with lmladder (``reports/reference/``, made by
``python -m lmladder.reports.reference``): readable records of every full matrix, with the
provenance a reader needs to trust them, and their committed report."""

from __future__ import annotations

import re
import shutil
from collections import Counter

from lmladder.reports.reference import DATA_DIR, MATRICES, REFERENCE, make_portable
from lmladder.results import read_record, scan_records, write_record
from lmladder.run import load_matrix, select_cells


def test_every_full_matrix_has_reference_records_with_provenance():
    scan = scan_records(REFERENCE)
    assert not scan.unreadable, scan.unreadable
    by_matrix = Counter(r["cell"]["matrix"] for r in scan.records)
    for name in MATRICES:
        cells = select_cells(load_matrix(name))
        assert by_matrix[name] == len(cells), (name, by_matrix[name], len(cells))
    for r in scan.records:
        prov = r["provenance"]
        assert re.fullmatch(r"[0-9a-f]{40}", prov["git_commit"]) and prov["git_dirty"] is False
        assert r["cell"]["budget"].get("seconds", 0) <= 180, r["cell"]["budget"]
        assert r["status"] == "ok" or r["error"]["message"], r["cell"]["label"]


def _strings(value):
    if isinstance(value, dict):
        yield from (s for v in value.values() for s in _strings(v))
    elif isinstance(value, list):
        yield from (s for v in value for s in _strings(v))
    elif isinstance(value, str):
        yield value


def test_shipped_records_name_no_path_of_the_machine_that_made_them():
    for r in scan_records(REFERENCE).records:
        machine_paths = [s for s in _strings(r) if re.match(r"/[\w.-]+/", s)]
        assert not machine_paths, (r["cell"]["label"], machine_paths)


def test_make_portable_replaces_the_data_folder_and_the_program(tmp_path):
    source = next((REFERENCE / "ptb").glob("KN3__*.json"))
    record = read_record(source)
    record["dataset"]["source"]["root"] = "/home/me/corpora"
    record["provenance"]["argv"] = ["/opt/x/reference.py", "--data-dir", "/home/me/corpora",
                                    "--max-seconds", "180"]
    write_record(tmp_path / source.name, record)
    assert make_portable(tmp_path) == 1
    fixed = read_record(tmp_path / source.name)
    assert fixed["dataset"]["source"]["root"] == DATA_DIR
    assert fixed["provenance"]["argv"] == ["python -m lmladder.reports.reference", "--data-dir",
                                           DATA_DIR, "--max-seconds", "180"]
    assert fixed["metrics"] == record["metrics"]
    assert make_portable(tmp_path) == 0  # nothing left to rewrite


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
