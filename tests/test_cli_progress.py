"""The command line while it runs: phase lines for scoring and tasks, amounts with units,
columns aligned for labels of any length, a fast torch-free ``list matrices``, and
``report --compare``'s one-line errors.

Runs drive :func:`lmladder.cli.main` in this process with the toy models of
:mod:`tests.toy_models`; stderr is captured (not a terminal), so the CLI writes each phase of a
cell as a line where a terminal would show it on the cell's bar.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from lmladder import cell as cell_module
from lmladder import matrix as matrix_module
from lmladder import registry
from lmladder import run as run_module
from lmladder.cli import clip, format_amount, format_progress, main
from lmladder.data import DataNotFoundError
from lmladder.run import MatrixError, read_matrix_section
from tests.helpers import write_matrix

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy-uniform",
                        registry.Entry("tests.toy_models:UniformLM", summary="uniform"))


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


# ---- phases ----------------------------------------------------------------------------------


@pytest.mark.parametrize("isolated", [True, False], ids=["child-process", "in-process"])
def test_a_run_says_when_a_cell_scores_and_runs_its_tasks(tmp_path, capsys, isolated):
    path = write_matrix(tmp_path / "m.toml", [{"name": "toy-uniform", "label": "flat"}],
                        datasets=["synthetic"], devices=["cpu"], tasks=["cloze"])
    argv = ["run", str(path), "--results", str(tmp_path / "res"), "--no-report"]
    assert main(argv + ([] if isolated else ["--in-process"])) == 0
    phases = [line.strip() for line in capsys.readouterr().err.splitlines()
              if line.startswith("    flat: ")]
    names = [line.removeprefix("flat: ").split(" (step")[0] for line in phases]
    # the uniform toy is closed-vocabulary (it generates) and has no pseudo_logprobs
    assert names == ["fit", "scoring valid", "scoring test", "top-k accuracy", "generating",
                     "task cloze"]
    assert phases[-1].startswith("flat: task cloze (step 6 of 6, ")
    assert phases[-1].endswith(" s into the cell)")


# ---- amounts with units ----------------------------------------------------------------------


@pytest.mark.parametrize(("value", "unit", "text"), [
    (12.5, "seconds", "12.5 s"),
    (15, "seconds", "15 s"),
    (0.04, "s", "0 s"),
    (59.96, "seconds", "1 min"),  # rounds to 60.0 s: shown as a minute, never "60.0 s"
    (125.4, "seconds", "2 min 05 s"),
    (180, "seconds", "3 min"),
    (3725, "seconds", "1 h 02 min"),
    (7200, "seconds", "2 h"),
    (30, "steps", "30 steps"),
    (950, "tokens", "950 tokens"),
    (120_000, "tokens", "120k tokens"),
    (12_500, "tokens", "12.5k tokens"),
    (999_950, "tokens", "1M tokens"),
    (1_234_567, "tokens", "1.23M tokens"),
    (2.5e9, "tokens", "2.5B tokens"),
    (0.25, "", "0.25"),
    (float("nan"), "tokens", "? tokens"),
    (float("inf"), "seconds", "? s"),
])
def test_format_amount(value, unit, text):
    assert format_amount(value, unit) == text


def test_format_progress_reads_done_of_total_with_units():
    assert format_progress(12.5, 15, "seconds") == "12.5 s / 15 s"
    assert format_progress(125, 180, "seconds") == "2 min 05 s / 3 min"
    assert format_progress(120_000, 500_000, "tokens") == "120k / 500k tokens"
    assert format_progress(30, 150, "steps") == "30 / 150 steps"
    assert format_progress(1, 2, "") == "1 / 2"


def test_open_ended_work_shows_its_elapsed_time():
    assert format_progress(3400, None, "tokens", elapsed=12.46) == "3.4k tokens, 12.5 s elapsed"
    assert format_progress(75, None, "seconds") == "1 min 15 s elapsed"
    assert format_progress(7, None, "steps") == "7 steps"


def test_clip_pads_short_text_and_cuts_long_text_with_an_ellipsis():
    assert clip("KN5", 6) == "KN5   "
    assert clip("x" * 60, 48) == "x" * 47 + "…"
    assert len(clip("x" * 60, 48)) == 48


# ---- alignment -------------------------------------------------------------------------------


def test_cell_lines_align_for_labels_of_3_and_60_characters(tmp_path, capsys):
    long = "A very long label that a researcher wrote to describe it, v2"
    assert len(long) == 60
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "toy-uniform", "label": "KN5", "budget": {"tokens": 1}},
        {"name": "toy-uniform", "label": long, "budget": {"tokens": 2}},
    ], datasets=["synthetic"], devices=["cpu"])
    assert main(["run", str(path), "--results", str(tmp_path / "res"), "--no-report"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  ok ")]
    assert len(lines) == 2
    assert len({line.index("test ppl") for line in lines}) == 1, lines
    assert len({line.index("synthetic") for line in lines}) == 1, lines
    assert long[:47] + "…" in out and long not in out  # capped at 48 characters


def test_cells_skipped_for_one_reason_are_one_summary_line(tmp_path, capsys, monkeypatch):
    real = cell_module.load_dataset

    def no_ptb(name, data_dir=None):
        if name == "ptb":
            raise DataNotFoundError("ptb: not found; put ptb.train.txt here")
        return real(name, data_dir)

    monkeypatch.setattr(cell_module, "load_dataset", no_ptb)
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "toy-uniform", "label": "U1", "budget": {"tokens": 1}},
        {"name": "toy-uniform", "label": "U2", "budget": {"tokens": 2}},
    ], datasets=["synthetic", "ptb"], devices=["cpu"])
    assert main(["run", str(path), "--results", str(tmp_path / "res"), "--no-report"]) == 0
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
    assert skipped == ["skipped: 2 cells (U1 on ptb, U2 on ptb): ptb: not found; put "
                       "ptb.train.txt here"]


# ---- list matrices ---------------------------------------------------------------------------


def test_list_matrices_is_fast_torch_free_and_shows_expected_times():
    code = ("import sys, time; from lmladder.cli import main; t = time.perf_counter(); "
            "main(['list', 'matrices']); "
            "print('torch' in sys.modules, time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    *listing, last = done.stdout.splitlines()
    torch_loaded, seconds = last.split()
    assert torch_loaded == "False"
    assert float(seconds) < 1.0  # the listing itself; the interpreter's start is not counted
    by_name = {line.split()[0]: line for line in listing}
    assert set(by_name) == set(run_module.list_matrices())
    for name in by_name:
        expected = read_matrix_section(name).expected_time
        assert expected, f"{name}.toml states no expected_time"
        assert expected in by_name[name]
    assert "on 2 quiet CPU cores" in by_name["quick"]


def test_an_unreadable_matrix_is_listed_not_fatal(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "matrices"
    folder.mkdir()
    write_matrix(folder / "good.toml", ["toy-uniform"], description="fine", expected_time="1 min")
    write(folder / "bad.toml", "[matrix\n")
    write(folder / "wrong.toml", '[matrix]\nexpected_time = 5\n')
    monkeypatch.setattr(matrix_module, "MATRIX_DIR", folder)
    monkeypatch.setattr("lmladder.cli.MATRIX_DIR", folder)
    assert main(["list", "matrices"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "fine" in lines["good"] and "1 min" in lines["good"]
    assert "(unreadable: malformed TOML" in lines["bad"]
    assert "(unreadable: [matrix]: key 'expected_time' must be" in lines["wrong"]
    assert str(folder) not in lines["bad"]  # the reason, not the path again


@pytest.mark.parametrize("value", ['""', '"two\\nlines"', '"' + "x" * 81 + '"'])
def test_expected_time_is_checked_like_the_other_fields(tmp_path, value):
    path = write(tmp_path / "m.toml", f"[matrix]\nexpected_time = {value}\n")
    with pytest.raises(MatrixError, match="expected_time"):
        read_matrix_section(str(path))


# ---- report --compare ------------------------------------------------------------------------


def test_report_compare_with_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    assert main(["report", "--compare", str(tmp_path / "a"), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lmladder: error: ")
    assert "nope" in err and "Traceback" not in err


def test_report_needs_a_folder_or_compare_not_both(tmp_path, capsys):
    assert main(["report"]) == 2
    assert "--compare RUN_A RUN_B" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    assert main(["report", str(tmp_path / "a"), "--compare", str(tmp_path / "a"),
                 str(tmp_path / "a")]) == 2
    assert "not both" in capsys.readouterr().err


def test_report_compare_writes_run_b_compare_html_by_default(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_render_compare(run_a, run_b, output, *, left_out):
        calls.append((Path(run_a), Path(run_b), Path(output)))
        Path(output).write_text("<html></html>")
        return Path(output)

    fake = types.ModuleType("lmladder.reports.compare")
    fake.render_compare = fake_render_compare
    monkeypatch.setitem(sys.modules, "lmladder.reports.compare", fake)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert main(["report", "--compare", str(a), str(b)]) == 0
    assert calls == [(a, b, b / "compare.html")]
    assert capsys.readouterr().out.strip() == f"report: {(b / 'compare.html').resolve()}"
    assert main(["report", "--compare", str(a), str(b), "-o", str(tmp_path / "c.html")]) == 0
    assert calls[-1][2] == tmp_path / "c.html"
