"""What a run guarantees: isolated and bounded cells, nothing finished lost, no work done twice.

Cells run in child processes; the toy models in :mod:`tests.toy_models` crash the ways real ones
do (SIGKILL as the OOM killer sends it, a segfault, a fit that never ends, unbounded allocation).
The kill and concurrency tests drive the real command line in separate processes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmladder import data as data_module
from lmladder import registry
from lmladder.api import Budget
from lmladder.cli import main
from lmladder.record import MetricSpec
from lmladder.results import load_records, read_record, scan_records
from lmladder.run import load_matrix, plan_cell, select_cells
from tests.helpers import write_matrix

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "toy-uniform",
                        registry.Entry("tests.toy_models:UniformLM", summary="uniform"))
    monkeypatch.setitem(registry.MODELS, "toy-broken",
                        registry.Entry("tests.toy_models:BrokenLM", {"mode": "raise"}))


def _vm_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmSize")


@pytest.mark.slow  # the cells' child processes crash, hang and hog memory: about 3 s
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and rlimits: Linux")
def test_crashing_cells_are_recorded_with_their_reason_and_the_run_goes_on(tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "toy-broken", "label": "oom-killed", "config": {"mode": "kill"}},
        {"name": "toy-broken", "label": "segfault", "config": {"mode": "segv"}},
        {"name": "toy-broken", "label": "never-ends", "config": {"mode": "hang"}, "time_limit": 2},
        {"name": "toy-broken", "label": "hog", "config": {"mode": "hog"}},
        {"name": "toy-uniform", "label": "fine"},
    ], datasets=["synthetic"], devices=["cpu"])
    limit = _vm_mib() + 600  # the child starts as a copy of this process
    t0 = time.monotonic()
    rc = main(["run", str(path), "--results", str(tmp_path / "res"), "--no-report",
               "--memory-limit", str(limit)])
    assert rc == 1
    assert time.monotonic() - t0 < 60
    by_label = {r.cell.label: r for r in load_records(tmp_path / "res")}
    assert set(by_label) == {"oom-killed", "segfault", "never-ends", "hog", "fine"}
    assert by_label["fine"].status == "ok"
    errors = {k: r.error for k, r in by_label.items() if k != "fine"}
    assert all(by_label[k].status == "failed" for k in errors)
    assert errors["oom-killed"].message.startswith("killed by signal 9 (SIGKILL) — likely out")
    assert "signal 11 (SIGSEGV)" in errors["segfault"].message
    assert errors["never-ends"].type == "TimeLimit"
    assert "exceeded the cell time limit of 2 s" in errors["never-ends"].message
    assert errors["hog"].type == "MemoryError"
    assert f"memory limit of {limit} MiB" in errors["hog"].message
    assert by_label["never-ends"].limits["time_limit_s"] == 2
    err = capsys.readouterr().err
    assert "FAILED: never-ends on synthetic" in err and "Traceback" not in err


def test_threads_are_recorded_and_part_of_the_key(tmp_path):
    def matrix(threads):
        return write_matrix(tmp_path / "a.toml", ["toy-uniform"], datasets=["synthetic"],
                            threads=threads)

    res = tmp_path / "res"
    assert main(["run", str(matrix(1)), "--results", str(res), "--no-report"]) == 0
    assert main(["run", str(matrix(2)), "--results", str(res), "--no-report"]) == 0
    records = load_records(res)
    assert sorted(r.cell.threads for r in records) == [1, 2]
    assert len({r.key for r in records}) == 2
    assert main(["run", str(tmp_path / "a.toml"), "--results", str(res), "--no-report",
                 "--threads", "1"]) == 0
    assert len(load_records(res)) == 2  # --threads 1 found the first run's cell


def test_max_seconds_caps_every_cells_training_and_is_part_of_its_budget(tmp_path):
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "hmm", "label": "endless EM", "budget": {"steps": 100000},
         "config": {"states": 8, "tol": 0.0, "patience": 100000}},
        {"name": "toy-uniform", "label": "short already", "budget": {"seconds": 0.5}},
    ], datasets=["synthetic"], devices=["cpu"])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--no-report",
                 "--max-seconds", "1.5"]) == 0
    by_label = {r.cell.label: r for r in load_records(res)}
    endless = by_label["endless EM"]
    assert endless.cell.budget == {"steps": 100000, "seconds": 1.5}
    assert endless.budget_used["seconds"] == 1.5
    assert endless.fit["seconds"] <= 1.5 * 1.3
    assert by_label["short already"].cell.budget == {"seconds": 0.5}  # under the cap
    assert main(["run", str(path), "--results", str(res), "--no-report",
                 "--max-seconds", "1"]) == 0
    assert len(load_records(res)) == 3  # a different cap makes "endless EM" a cell of its own


def test_a_renamed_matrix_finds_its_finished_cells(tmp_path, capsys):
    res = tmp_path / "res"
    for name in ("a.toml", "b.toml"):
        write_matrix(tmp_path / name, ["toy-uniform"], datasets=["synthetic"])
    assert main(["run", str(tmp_path / "a.toml"), "--results", str(res), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "b.toml"), "--results", str(res), "--no-report"]) == 0
    assert "0 cells run, 1 already done" in capsys.readouterr().err
    assert len(list(res.glob("*.json"))) == 1


def test_any_printable_label_names_a_safe_visible_file(tmp_path):
    labels = [".hidden", "../../escape", "a/b\\c", "$\\frac{$", "<script>alert(1)</script>", "..."]
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "toy-uniform", "label": label, "threads": i + 1} for i, label in enumerate(labels)
    ], datasets=["synthetic"])
    res = tmp_path / "deep" / "res"
    assert main(["run", str(path), "--results", str(res)]) == 0
    files = [p for p in tmp_path.rglob("*.json") if p.name != "results.json"]  # the export
    assert len(files) == len(labels)
    assert all(p.parent == res and not p.name.startswith(".") for p in files)
    html = (res / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    assert "$\\frac{$" in html


def test_a_forced_rerun_that_fails_keeps_the_ok_record(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the cat number {i % 7} sat\n" for i in range(40)))
    path = write_matrix(tmp_path / "m.toml", ["kn3"], datasets=[f"text:{corpus}"])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--no-report"]) == 0
    (record_file,) = res.glob("*.json")
    ok = read_record(record_file)
    corpus.write_bytes(b"caf\xe9 au lait\n" * 40)  # the corpus is now not UTF-8
    data_module._load_cached.cache_clear()
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(res), "--no-report", "--force"]) == 1
    err = capsys.readouterr().err
    assert "the ok record is kept" in err
    assert read_record(record_file) == ok
    (attempt,) = res.glob("*.failed-*.json")
    failed = read_record(attempt)
    assert failed.status == "failed" and "not valid UTF-8" in failed.error.message
    assert json.loads(attempt.read_text())["status"] == "failed"
    assert [r.status for r in load_records(res)] == ["ok"]  # the attempt is not a record


def test_a_bad_corpus_fails_its_cells_and_the_others_run(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"na\xefve words here\n" * 30)
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n" * 30)
    path = write_matrix(tmp_path / "m.toml", ["kn3", "toy-uniform"],
                        datasets=[f"text:{latin1}", f"text:{blank}", "synthetic"])
    assert main(["run", str(path), "--results", str(tmp_path / "res"), "--no-report"]) == 1
    records = load_records(tmp_path / "res")
    assert len(records) == 6
    status = {(r.cell.model, r.cell.dataset.split("/")[-1]): r for r in records}
    for model in ("kn3", "toy-uniform"):
        assert status[model, "synthetic"].status == "ok"
        assert "line 1: not valid UTF-8" in status[model, "latin1.txt"].error.message
        assert "has no words" in status[model, "blank.txt"].error.message


def test_unreadable_records_are_named_and_their_cells_rerun(tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", ["toy-uniform"], datasets=["synthetic"], seeds=[0, 1])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--no-report"]) == 0
    first, second = sorted(res.glob("*.json"))
    first.write_text('{"api_version": 2, "key": ')  # truncated by a crash of another tool
    second.write_bytes(b"\xff\xfe garbage")
    (res / "notes.json").write_text("[1, 2, 3]")  # a stray file that is not a record
    (res / "sub").mkdir()
    (res / "sub" / "x__y__seed0__cpu__0123456789abcdef.json").write_text('{"api_version": 7}')
    scan = scan_records(res)
    assert len(scan.records) == 0 and len(scan.unreadable) == 3
    assert any("not valid JSON" in u and str(first) in u for u in scan.unreadable)
    assert any("not UTF-8" in u for u in scan.unreadable)
    assert any("version 7 is newer" in u for u in scan.unreadable)
    capsys.readouterr()
    assert main(["run", str(path), "--results", str(res)]) == 0
    err = capsys.readouterr().err
    assert "2 cells run" in err and "its cell will be rerun" in err
    assert len(load_records(res)) == 2
    html = (res / "report.html").read_text()
    assert "version 7 is newer" in html  # the one left is listed in the report


def test_records_are_written_atomically_readable_and_orphans_removed(tmp_path):
    res = tmp_path / "res"
    res.mkdir()
    dead = res / ".tmp-999999999-abc.json"  # a temp file of a process that no longer exists
    dead.write_text("{")
    mine = res / f".tmp-{os.getpid()}-live.json"
    mine.write_text("{")
    path = write_matrix(tmp_path / "m.toml", ["toy-uniform"], datasets=["synthetic"])
    old = os.umask(0o022)
    try:
        assert main(["run", str(path), "--results", str(res)]) == 0
    finally:
        os.umask(old)
    assert not dead.exists() and mine.exists()
    for f in [*res.glob("*.json"), res / "report.html"]:
        assert f.stat().st_mode & 0o777 == 0o644, f


# ---- the real command line in other processes --------------------------------------------

NGRAM_MODELS = ["kn3", "kn5", "wb3", "ad3", "laplace2", "unigram"]


def _ngram_matrix(tmp_path: Path) -> Path:
    """Six n-gram models, two seeds: 12 cells."""
    return write_matrix(tmp_path / "m.toml", NGRAM_MODELS, scoring={"accuracy_tokens": 500},
                        description="six n-gram models, two seeds", datasets=["synthetic"],
                        seeds=[0, 1], devices=["cpu"])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lmladder.cli", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _numbers(res: Path) -> dict:
    return {r.key: (r.status, r.metric("test", "ppl")) for r in load_records(res)}


@pytest.mark.slow  # this and the next two start lmladder in other processes: 2-4 s each
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and signals: Linux")
def test_concurrent_runs_compute_each_cell_once(tmp_path):
    path = _ngram_matrix(tmp_path)
    res = tmp_path / "res"
    procs = [subprocess.Popen(_cli("run", str(path), "--results", str(res), "--no-report"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=tmp_path) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    computed = 0
    for _, err in outs:
        line = next(x for x in err.splitlines() if " cells run, " in x)
        computed += int(line.split()[0])
    assert computed == 12  # each cell once, among the three runs
    records = load_records(res)
    assert len(records) == 12 and len(list(res.glob("*.json"))) == 12
    assert all(r.status == "ok" for r in records)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals: Linux")
def test_killed_runs_lose_nothing_and_duplicate_nothing(tmp_path):
    path = _ngram_matrix(tmp_path)
    reference = tmp_path / "reference"
    subprocess.run(_cli("run", str(path), "--results", str(reference), "--no-report"),
                   check=True, capture_output=True, env=_env(), cwd=tmp_path, timeout=300)
    res = tmp_path / "res"
    rng = random.Random(0)
    for _ in range(4):  # kill -9 at random points, as a crash or a scheduler would
        proc = subprocess.Popen(_cli("run", str(path), "--results", str(res), "--no-report"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
                                cwd=tmp_path)
        time.sleep(rng.uniform(0.8, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    done = subprocess.run(_cli("run", str(path), "--results", str(res), "--no-report"),
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _numbers(res) == _numbers(reference)
    assert len(list(res.glob("*.json"))) == 12
    assert not list(res.glob(".tmp-*"))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals: Linux")
def test_ctrl_c_stops_the_cell_and_the_run_at_once(tmp_path):
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "hmm-hmmlearn", "config": {"states": 64}, "budget": {"seconds": 120}},
    ], datasets=["synthetic"])
    # as from a terminal: a shell without job control starts background jobs (a CI runner's
    # `.ci/run &`) with SIGINT ignored, which Python and this child would inherit
    proc = subprocess.Popen(_cli("run", str(path), "--results", str(tmp_path / "res")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 120
    while children.exists() and not children.read_text().strip():  # until a cell is fitting
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(1 if children.exists() else 4)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 20
    assert "run the same command again" in err and "Traceback" not in err


# ---- tasks and learning curves in a matrix ------------------------------------------------


def test_a_matrix_runs_tasks_and_learning_curves_into_its_records(tmp_path, monkeypatch, capsys):
    from lmladder import tasks

    monkeypatch.setitem(tasks.TASKS, "toy-broken-task", "tests.toy_models:BrokenTask")
    monkeypatch.setitem(tasks.TASKS, "toy-picky-task", "tests.toy_models:PickyTask")
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "kn3", "fractions": [0.25, 1.0]},
        {"name": "toy-uniform", "tasks": ["cloze", "toy-picky-task"]},
    ], datasets=["synthetic"], tasks=["cloze", "toy-picky-task", "toy-broken-task"])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res)]) == 1  # the broken task
    err = capsys.readouterr().err
    assert "task toy-broken-task: RuntimeError: the task broke" in err
    records = {(r.cell.model, r.cell.fraction): r for r in load_records(res)}
    assert set(records) == {("kn3", 0.25), ("kn3", 1.0), ("toy-uniform", 1.0)}
    assert all(r.status == "ok" for r in records.values())
    uniform = records["toy-uniform", 1.0].tasks
    assert set(uniform) == {"cloze", "toy-picky-task"}
    assert uniform["cloze"].score("accuracy") == pytest.approx(0.2)  # ties with all 5 candidates
    assert uniform["toy-picky-task"].status == "not applicable"
    full, quarter = records["kn3", 1.0], records["kn3", 0.25]
    picky = full.tasks["toy-picky-task"]
    assert (picky.status, dict(picky.scores)) == ("ok", {"score": 1.0, "seed": 0})
    assert picky.error is None and picky.reason is None
    assert picky.seconds == pytest.approx(0, abs=1)
    assert picky.metrics == (MetricSpec("score", higher_is_better=True, chance=0.5),)
    assert full.tasks["toy-broken-task"].status == "failed"
    assert full.tasks["toy-broken-task"].error.message == "the task broke"
    assert full.tasks["cloze"].score("accuracy") > 0.3
    tokens = full.dataset["splits"]["train"]["tokens"]
    assert quarter.dataset["splits"]["train"]["tokens"] == pytest.approx(tokens / 4, rel=0.01)
    assert quarter.fit["train_tokens"] < full.fit["train_tokens"]
    assert quarter.metric("test", "ppl") > full.metric("test", "ppl")
    assert quarter.dataset["splits"]["test"] == full.dataset["splits"]["test"]
    assert quarter.key != full.key
    html = (res / "report.html").read_text()
    assert "Task scores" in html and ": learning curves" in html


def test_a_learning_curve_scales_the_budget(tmp_path):
    def fit_budget(budget, fraction):
        path = write_matrix(tmp_path / "m.toml", [{"name": "toy-uniform", "budget": budget}],
                            datasets=["synthetic"], devices=["cpu"], fractions=[fraction])
        (cell,) = select_cells(load_matrix(str(path)))
        return plan_cell(load_matrix(str(path)), cell).fit_budget

    assert fit_budget({"tokens": 1000, "steps": 3, "seconds": 8.0}, 0.25) == Budget(
        tokens=250, steps=1, seconds=2.0)
    assert fit_budget({"seconds": 8.0}, 1.0) == Budget(seconds=8.0)


def test_a_masked_lm_cell_records_its_pseudo_perplexity_apart(tmp_path):
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "hf-bert", "budget": {"steps": 5},
         "config": {"n_layer": 1, "n_head": 2, "n_embd": 16, "context": 8, "batch_size": 8}},
        "kn3",
    ], scoring={"accuracy_tokens": 300}, datasets=["synthetic"])
    assert main(["run", str(path), "--results", str(tmp_path / "res")]) == 0
    records = {r.cell.model: r for r in load_records(tmp_path / "res")}
    pseudo = records["hf-bert"].metrics["test_pseudo"]
    assert pseudo["tokens"] == 300 and 1 < pseudo["pseudo_ppl"] < 10 * 400
    assert "not comparable" in pseudo["protocol"]
    assert records["kn3"].metrics["test_pseudo"] is None
    assert "pseudo-ppl (MLM)" in (tmp_path / "res" / "report.html").read_text()
