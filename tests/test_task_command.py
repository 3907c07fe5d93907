"""``lmladder task``: task options and model config from the command line, and only the data
a task needs."""

from __future__ import annotations

import json

import pytest

from lmladder import tasks
from lmladder.api import ConfigError
from lmladder.cli import main
from lmladder.tasks.cloze import Cloze


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["task", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_options_and_overrides_reach_the_task_and_the_model(capsys):
    code, out, err = run(capsys, "cloze", "kn3", "--dataset", "synthetic", "--option",
                         "items=40", "--option", "bands=2", "--set", "discount=0.5", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["items"] == 40 and len(result["accuracy_by_band"]) == 2
    assert result["options"] == {"items": 40, "bands": 2}
    assert result["overrides"] == {"discount": 0.5}
    assert result["dataset"] == "synthetic"


def test_an_override_changes_the_model():
    plain = tasks.run_task("cloze", "kn3", dataset="synthetic", options={"items": 60})
    other = tasks.run_task("cloze", "laplace2", dataset="synthetic", options={"items": 60})
    assert plain["paired"]["items"] == other["paired"]["items"]  # same items
    assert plain["accuracy"] != other["accuracy"]


@pytest.mark.parametrize(("argv", "says"), [
    (["--option", "itemz=4"], "task 'cloze' has no option 'itemz'; its options: items"),
    (["--option", "items=0"], "task 'cloze': cloze: items must be"),
    (["--option", "items"], "--option 'items': expected KEY=VALUE"),
    (["--option", "items=4", "--option", "items=5"], "--option gives 'items' twice"),
    (["--set", "no_such_key=1"], "no_such_key"),
])
def test_bad_options_are_one_line_errors(capsys, argv, says):
    code, out, err = run(capsys, "cloze", "kn3", "--dataset", "synthetic", *argv)
    assert code == 2 and says in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_option_values_are_read_as_toml_else_text():
    from lmladder.cli import _assignments

    assert _assignments(["a=500", "b=2e-3", "c=true", "d=[1, 2]", "e=word", 'f="x y"'],
                        "--option") == {"a": 500, "b": 0.002, "c": True, "d": [1, 2],
                                        "e": "word", "f": "x y"}


def test_a_task_with_its_own_data_reads_no_dataset(monkeypatch):
    """Translation trains on Multi30k: it refuses --dataset, and reads no language-model corpus
    (rt-polarity once failed without PTB present and recorded "dataset": "ptb")."""
    import lmladder.data

    def no_corpus(*args, **kwargs):
        raise AssertionError("a task with its own data loaded a language-model dataset")

    monkeypatch.setattr(lmladder.data, "load_dataset", no_corpus)
    with pytest.raises(ConfigError, match="trains on its own data .multi30k.*--dataset ptb"):
        tasks.run_task("translation", "kn3", dataset="ptb")
    own = [n for n in tasks.tasks() if tasks.task_class(n).own_data]
    assert {"translation", "rt-polarity", "movie-reviews"} <= set(own)


def test_a_task_with_its_own_data_records_it(data_dir, monkeypatch):
    import lmladder.data

    monkeypatch.setattr(lmladder.data, "load_dataset", lambda *a, **k: 1 / 0)
    result = tasks.run_task("rt-polarity", "unigram", data_dir=data_dir)
    assert result["dataset"] == "sentence_polarity" and result["status"] == "ok"
    assert 0.74 < result["accuracy"] < 0.80


def test_task_options_builds_the_task():
    assert isinstance(tasks.task_options("cloze", {"items": 7}), Cloze)
    assert tasks.task_options("cloze", {"items": 7}).n_items == 7
