"""The matrix runner, results files, CLI and report, with toy models (no family needed)."""

import json
import re
import textwrap

import pytest

from lmladder import registry
from lmladder.cli import main
from lmladder.record import API_VERSION, RecordError
from lmladder.results import is_record_name, load_records, read_record, scan_records
from lmladder.run import MatrixError, list_matrices, load_matrix
from tests.helpers import write_matrix


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy-uniform",
                        registry.Entry("tests.toy_models:UniformLM", summary="uniform"))
    monkeypatch.setitem(registry.MODELS, "toy-broken",
                        registry.Entry("tests.toy_models:BrokenLM", {"mode": "raise"}))


def write(tmp_path, body, name="m.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


UNIFORM = {"name": "toy-uniform", "label": "Uniform"}
BROKEN = {"name": "toy-broken", "label": "Broken"}


def toy_matrix(tmp_path, models=(UNIFORM, BROKEN)):
    """The toy models (by default the uniform one and one that fails) on the synthetic corpus,
    seeds 0 and 1: ``tmp_path / "m.toml"``."""
    return write_matrix(tmp_path / "m.toml", models, scoring={"accuracy_tokens": 300},
                        description="toy", datasets=["synthetic"], seeds=[0, 1], devices=["cpu"])


def test_run_records_failures_and_goes_on(tmp_path, capsys):
    path = toy_matrix(tmp_path)
    rc = main(["run", str(path), "--results", str(tmp_path / "res")])
    assert rc == 1  # a cell failed
    records = load_records(tmp_path / "res")
    assert len(records) == 4
    ok = [r for r in records if r.status == "ok"]
    failed = [r for r in records if r.status == "failed"]
    assert len(ok) == 2 and len(failed) == 2
    assert "boom: out of memory" in failed[0].error.message
    files = [p for p in (tmp_path / "res").glob("*.json") if is_record_name(p)]
    assert len(files) == 4
    assert all(json.loads(p.read_text())["api_version"] == API_VERSION for p in files)
    r = ok[0]
    assert r.metric("test", "ppl") == pytest.approx(400.0)
    assert r.oracle["test"]["ppl"] < 100
    assert r.metrics["test_accuracy"]["accuracy_tokens"] == 300
    assert r.protocol["reset_at_boundary"] is False
    for key in ("git_commit", "date", "versions", "python"):
        assert key in r.provenance
    assert r.throughput["score_tokens_per_s"] > 0
    assert r.memory["rss_peak_mib"] > 0
    out = capsys.readouterr()
    assert "FAILED: Broken on synthetic" in out.err
    report = (tmp_path / "res" / "report.html").read_text()
    assert "Uniform" in report and "400.00" in report and "source (oracle)" in report
    assert "boom: out of memory" in report and "<svg" in report
    # self-contained: no resource is loaded from anywhere (SVG namespace names are not resources)
    assert not re.search(r'(src|href)="(https?:)?//', re.sub(r'xmlns(:\w+)?="[^"]*"', "", report))


def test_rerun_skips_done_cells_and_force_reruns(tmp_path, capsys):
    path = toy_matrix(tmp_path, [UNIFORM])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--no-report"]) == 0
    files = sorted(res.glob("*.json"))
    assert len(files) == 2
    stamps = [read_record(p).provenance["date"] for p in files]
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(res), "--no-report"]) == 0
    assert "0 cells run, 2 already done" in capsys.readouterr().err
    assert [read_record(p).provenance["date"] for p in files] == stamps
    assert main(["run", str(path), "--results", str(res), "--no-report", "--force"]) == 0
    assert "2 cells run" in capsys.readouterr().err


def test_interrupt_keeps_finished_cells(tmp_path, monkeypatch, capsys):
    """In-process (debugging) mode: a KeyboardInterrupt inside a fit ends the run at once."""
    monkeypatch.setitem(registry.MODELS, "toy-broken",
                        registry.Entry("tests.toy_models:BrokenLM", {"mode": "interrupt"}))
    path = toy_matrix(tmp_path)
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--in-process"]) == 130
    records = load_records(res)
    assert len(records) == 2 and all(r.status == "ok" for r in records)
    assert not list(res.glob(".tmp-*"))
    assert "run the same command again" in capsys.readouterr().err


def test_nan_score_is_a_failed_cell_naming_the_position(tmp_path):
    path = toy_matrix(tmp_path, [UNIFORM, {**BROKEN, "config": {"mode": "nan"}}])
    main(["run", str(path), "--results", str(tmp_path / "res"), "--no-report", "--only", "Broken"])
    (rec,) = [r for r in load_records(tmp_path / "res") if r.cell.seed == 0]
    assert rec.status == "failed" and "position 3" in rec.error.message


@pytest.mark.parametrize("body,needle", [
    ("[matrix]\ndatasets = [\"synthetic\"\n", "malformed TOML"),
    ("[matrix]\ndatasets = [\"synthetic\"]\n[[models]]\nname = \"kn9\"\n", "unknown model 'kn9'"),
    ("[matrix]\ndatasets = [\"ptbb\"]\n[[models]]\nname = \"toy-uniform\"\n", "unknown dataset"),
    ("[matrix]\nseed = [0]\n[[models]]\nname = \"toy-uniform\"\n", "unknown key(s) 'seed'"),
    ("[matrix]\n[[models]]\nname = \"toy-uniform\"\nbudget = { secs = 3 }\n", "'secs'"),
    ("[matrix]\n[[models]]\nname = \"toy-broken\"\nconfig = { mode = 3 }\n", "'mode' must be"),
    ("[matrix]\n[scoring]\nwindow = 0\n[[models]]\nname = \"toy-uniform\"\n", "window"),
    ("[matrix]\n", "no [[models]]"),
])
def test_bad_matrices_name_file_and_problem(tmp_path, body, needle, capsys):
    path = write(tmp_path, body)
    with pytest.raises(MatrixError) as err:
        load_matrix(str(path))
    assert str(path) in str(err.value) and needle in str(err.value)
    assert main(["run", str(path)]) == 2
    assert needle in capsys.readouterr().err


def test_malformed_toml_gives_the_line(tmp_path):
    path = write(tmp_path, "[matrix]\ndescription = \"x\"\ndatasets = [\"a\",\n\n[[models]]\n")
    with pytest.raises(MatrixError, match=r"line \d+"):
        load_matrix(str(path))


def test_unknown_matrix_name_lists_the_shipped_ones(capsys):
    assert main(["run", "quik"]) == 2
    assert "quick" in capsys.readouterr().err


def test_list_commands(capsys):
    assert main(["list", "datasets"]) == 0
    assert "synthetic" in capsys.readouterr().out
    assert main(["list", "models"]) == 0
    assert "toy-uniform" in capsys.readouterr().out
    assert main(["list", "matrices"]) == 0
    assert "quick" in capsys.readouterr().out


def test_report_command_and_missing_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    res = tmp_path / "res"
    main(["run", str(toy_matrix(tmp_path)), "--results", str(res), "--no-report"])
    assert main(["report", str(res), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_records_of_another_schema_version_are_refused(tmp_path):
    path = tmp_path / "x__synthetic__seed0__cpu__0123456789abcdef.json"
    path.write_text(json.dumps({"api_version": 99}))
    with pytest.raises(RecordError, match="version 99 is newer"):
        read_record(path)
    assert load_records(tmp_path) == []  # listed as unreadable, never averaged in
    assert scan_records(tmp_path).unreadable[0].startswith(str(path))


@pytest.mark.parametrize("name", list_matrices())
def test_shipped_matrices_are_valid(name):
    matrix = load_matrix(name)
    assert matrix.spec.description and matrix.models


def test_end_to_end_with_real_models(tmp_path, capsys):
    """A tiny matrix of real n-gram models on a user corpus: run, report, and check both."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "quickly"]
    for split, n in (("train", 400), ("valid", 40), ("test", 40)):
        lines = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(n)]
        (corpus / f"{split}.txt").write_text("\n".join(lines) + "\n")
    path = write_matrix(tmp_path / "m.toml", ["kn3", {"name": "wb3", "label": "WB3"}],
                        description="e2e", datasets=[f"text:{corpus}"])
    assert main(["run", str(path), "--results", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "report:" in out
    records = {r.cell.label: r for r in load_records(tmp_path / "res")}
    assert set(records) == {"kn3", "WB3"}
    for r in records.values():
        # 10 words + <eos> (+ <unk>): a model of i.i.d. words must land near the uniform 11
        assert 8 < r.metric("test", "ppl") < 14
        assert r.dataset["splits"]["test"]["lines"] == 40
    html = (tmp_path / "res" / "report.html").read_text()
    assert "WB3" in html and "kn3" in html and "<h4>Sample" in html
    assert f"{records['WB3'].metric('test', 'ppl'):.2f}" in html
