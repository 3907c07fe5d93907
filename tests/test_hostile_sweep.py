"""Hostile inputs, the sweep after round three (issue 23): the classes a second sweep of 281
cases still found, each pinned by its case and a variant.

- ``lmladder report`` and ``report --compare`` left a broken record out of the page but said
  nothing on the command line: each left-out file is now a ``left out: FILE: reason`` line.
- A folder named like a record was skipped without a word (now left out, named), and a rerun
  whose record path is a folder failed naming its temporary file (now the record's path).
- A file named ``.locks`` in a results folder read "cannot create the results folder".
- ``--max-seconds 1e308`` was an internal error (an int too large for the clock).
- A ``text:`` folder with an empty split named neither the file nor what to do, and the cell's
  message named the dataset twice.
- Seeds out of range did not name the key ``seeds``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmladder.cli import main
from tests.helpers import write_matrix

SYN = {"datasets": ["synthetic"]}


def _main(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's errors
        return exit_.code


def _error_line(capsys, rc: int, *, code: int = 2) -> str:
    out = capsys.readouterr()
    assert rc == code, out.err
    assert "Traceback" not in out.err + out.out and "internal error" not in out.err
    lines = [line for line in out.err.splitlines() if "error:" in line]
    assert len(lines) == 1, out.err
    return lines[0]


def _run(tmp_path, models, results="res", *extra, **matrix) -> int:
    path = write_matrix(tmp_path / "m.toml", models, **(matrix or SYN))
    return _main(["run", path, "--results", tmp_path / results, "--no-report", *extra])


@pytest.fixture
def results(tmp_path, capsys) -> Path:
    assert _run(tmp_path, [{"name": "unigram", "label": "U"}, {"name": "kn3", "label": "K"}]) == 0
    capsys.readouterr()
    return tmp_path / "res"


def _record(folder: Path, label: str) -> Path:
    (path,) = folder.glob(f"{label}__*.json")
    return path


BROKEN = {
    "null": lambda text: "null",
    "array": lambda text: "[1, 2]",
    "truncated": lambda text: text[:150],
    "empty": lambda text: "",
    "ppl below one": lambda text: json.dumps(
        {**json.loads(text), "metrics": {**json.loads(text)["metrics"], "test": {
            **json.loads(text)["metrics"]["test"], "ppl": 0.5}}}),
    "api_version 999": lambda text: json.dumps({**json.loads(text), "api_version": 999}),
    "status unknown": lambda text: json.dumps({**json.loads(text), "status": "great"}),
    "seed a string": lambda text: json.dumps(
        {**json.loads(text), "cell": {**json.loads(text)["cell"], "seed": "zero"}}),
}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_report_names_each_left_out_record_on_the_command_line(results, tmp_path, capsys, how):
    bad = _record(results, "U")
    bad.write_text(BROKEN[how](bad.read_text()))
    before = bad.read_bytes()
    assert _main(["report", results, "-o", tmp_path / "r.html", "--no-reference"]) == 0
    err = capsys.readouterr().err
    left = [line for line in err.splitlines() if line.startswith("left out: ")]
    assert len(left) == 1 and str(bad) in left[0], err
    assert "Traceback" not in err
    assert bad.read_bytes() == before  # left out, never rewritten
    assert "K" in (tmp_path / "results.md").read_text()


def test_compare_names_left_out_records_of_either_folder(results, tmp_path, capsys):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(results, other)
    bad = _record(other, "U")
    bad.write_text(bad.read_text()[:100])
    assert _main(["report", "--compare", results, other, "-o", tmp_path / "c.html"]) == 0
    err = capsys.readouterr().err
    left = [line for line in err.splitlines() if line.startswith("left out: ")]
    assert len(left) == 1 and str(bad) in left[0], err


def test_a_folder_named_like_a_record_is_left_out_and_named(results, tmp_path, capsys):
    folder = results / "X__synthetic__seed0__cpu__0123456789abcdef.json"
    folder.mkdir()
    assert _main(["report", results, "-o", tmp_path / "r.html", "--no-reference"]) == 0
    err = capsys.readouterr().err
    assert f"left out: {folder}: a folder named like a result record" in err
    assert folder.is_dir()


def test_a_rerun_whose_record_is_a_folder_names_the_record(results, tmp_path, capsys):
    record = _record(results, "U")
    record.unlink()
    record.mkdir()
    line = _error_line(capsys, _run(tmp_path, [{"name": "unigram", "label": "U"}]))
    assert f"{record}: is a folder" in line and "remove or rename it" in line
    assert ".tmp-" not in line
    assert record.is_dir() and not list(results.glob(".tmp-*"))


def test_a_file_named_locks_is_named(results, tmp_path, capsys):
    import shutil

    shutil.rmtree(results / ".locks")
    (results / ".locks").write_text("mine")
    line = _error_line(capsys, _run(tmp_path, [{"name": "unigram", "label": "U"}],
                                    "res", "--force"))
    assert str(results / ".locks") in line and "remove it" in line
    assert (results / ".locks").read_text() == "mine"


@pytest.mark.parametrize("seconds", ["1e308", "1e300", str(2**70)])
def test_a_huge_max_seconds_runs_instead_of_overflowing(tmp_path, capsys, seconds):
    assert _run(tmp_path, [{"name": "unigram", "label": "U"}], "res", "--max-seconds",
                seconds) == 0
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize("split", ["train", "valid", "test"])
@pytest.mark.parametrize("prefix", ["text:", "chars:"])
def test_an_empty_split_file_of_a_corpus_folder_is_named(tmp_path, capsys, split, prefix):
    corpus = tmp_path / "corp"
    corpus.mkdir()
    for s in ("train", "valid", "test"):
        (corpus / f"{s}.txt").write_text("the cat sat on the mat\n" * 20)
    (corpus / f"{split}.txt").write_text(" \n\n\t\n")
    assert _run(tmp_path, [{"name": "unigram", "label": "U"}],
                datasets=[f"{prefix}{corpus}"]) == 1
    err = capsys.readouterr().err
    (failed,) = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert f"{corpus / split}.txt: has no text" in failed and "put the" in failed
    assert failed.count(f"dataset '{prefix}{corpus}'") == 1, failed
    assert (corpus / f"{split}.txt").read_text() == " \n\n\t\n"


@pytest.mark.parametrize("seed", [-1, 2**40])
def test_seeds_out_of_range_name_the_key(tmp_path, capsys, seed):
    line = _error_line(capsys, _run(tmp_path, [{"name": "unigram"}], datasets=["synthetic"],
                                    seeds=[seed]))
    assert re.search(r"m\.toml.*seeds: seed " + str(seed), line), line
    assert "give seeds in that range" in line
