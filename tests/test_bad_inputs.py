"""Every user mistake ends in one line naming the culprit, exit code 2, and no traceback.

Each case is a matrix file (checked when it is loaded, before any cell runs) or a command line;
the needle is what the one line must say.  The matrix cases also check that the line names the
matrix file.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmladder import registry
from lmladder.api import Budget, ConfigError, build_config
from lmladder.cli import main
from lmladder.run import MatrixError, load_matrix

OK_MODEL = '[[models]]\nname = "kn3"\n'
SYN = '[matrix]\ndatasets = ["synthetic"]\n'


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


MATRIX_CASES = [
    # (case id, matrix text, needle)
    ("models-as-table", SYN + '[models]\nname = "kn3"\n', "[[models]]"),
    ("seeds-empty", "[matrix]\nseeds = []\n" + OK_MODEL, "seeds is empty"),
    ("devices-empty", "[matrix]\ndevices = []\n" + OK_MODEL, "devices is empty"),
    ("datasets-empty", "[matrix]\ndatasets = []\n" + OK_MODEL, "datasets is empty"),
    ("device-tpu", '[matrix]\ndevices = ["tpu"]\n' + OK_MODEL, "unknown device 'tpu'"),
    ("device-gpu", '[matrix]\ndevices = ["gpu"]\n' + OK_MODEL, "unknown device 'gpu'"),
    ("device-cuda-colon", '[matrix]\ndevices = ["cuda:x"]\n' + OK_MODEL, "unknown device"),
    ("device-cuda-99", '[matrix]\ndevices = ["cuda:99"]\n' + OK_MODEL, "'cuda:99' is not avail"),
    ("seed-negative", "[matrix]\nseeds = [-1]\n" + OK_MODEL, "seed -1"),
    ("seed-too-big", "[matrix]\nseeds = [4294967296]\n" + OK_MODEL, "seed 4294967296"),
    ("seed-beyond-64-bits", "[matrix]\nseeds = [99999999999999999999999]\n" + OK_MODEL, "seeds"),
    ("seed-twice", "[matrix]\nseeds = [0, 0]\n" + OK_MODEL, "twice"),
    ("seed-string", '[matrix]\nseeds = ["a"]\n' + OK_MODEL, "'seeds' must be"),
    ("seeds-not-list", "[matrix]\nseeds = 3\n" + OK_MODEL, "'seeds' must be"),
    ("threads-zero", "[matrix]\nthreads = 0\n" + OK_MODEL, "threads must be"),
    ("threads-word", '[matrix]\nthreads = "many"\n' + OK_MODEL, "'threads' must be"),
    ("time-limit-zero", "[matrix]\ntime_limit = 0\n" + OK_MODEL, "time_limit must be"),
    ("time-limit-negative", "[matrix]\ntime_limit = -5\n" + OK_MODEL, "time_limit must be"),
    ("time-limit-inf", "[matrix]\ntime_limit = inf\n" + OK_MODEL, "time_limit"),
    ("memory-limit-tiny", "[matrix]\nmemory_limit_mib = 1\n" + OK_MODEL, "memory_limit_mib"),
    ("description-int", "[matrix]\ndescription = 3\n" + OK_MODEL, "'description' must be"),
    ("matrix-not-table", "matrix = 3\n" + OK_MODEL, "matrix must be a table"),
    ("unknown-table", SYN + "[foo]\n" + OK_MODEL, "unknown table(s) ['foo']"),
    ("unknown-matrix-key", "[matrix]\nseed = [0]\n" + OK_MODEL, "unknown key(s) 'seed'"),
    ("accuracy-tokens-zero", SYN + "[scoring]\naccuracy_tokens = 0\n" + OK_MODEL,
     "accuracy_tokens must be >= 1"),
    ("accuracy-tokens-negative", SYN + "[scoring]\naccuracy_tokens = -3\n" + OK_MODEL,
     "accuracy_tokens must be >= 1"),
    ("window-zero", SYN + "[scoring]\nwindow = 0\n" + OK_MODEL, "window"),
    ("stride-above-window", SYN + "[scoring]\nwindow = 4\nstride = 9\n" + OK_MODEL, "stride"),
    ("reset-not-bool", SYN + '[scoring]\nreset_at_boundary = "yes"\n' + OK_MODEL,
     "'reset_at_boundary' must be"),
    ("models-not-tables", "models = [1, 2]\n" + SYN, "[[models]] tables"),
    ("no-models", SYN, "no [[models]]"),
    ("model-without-name", SYN + '[[models]]\nlabel = "x"\n', "name"),
    ("model-name-int", SYN + "[[models]]\nname = 5\n", "'name' must be"),
    ("unknown-model", SYN + '[[models]]\nname = "kn9"\n', "unknown model 'kn9'"),
    ("duplicate-labels", SYN + OK_MODEL + 'label = "A"\n[[models]]\nname = "wb3"\nlabel = "A"\n',
     "label 'A' is also models[0]'s"),
    ("duplicate-identity", SYN + OK_MODEL + '[[models]]\nname = "kn3"\nlabel = "again"\n',
     "every cell would be run twice"),
    ("label-tab", SYN + OK_MODEL + 'label = "a\\tb"\n', "control characters"),
    ("corpus-folder-incomplete", '[matrix]\ndatasets = ["chars:/"]\n' + OK_MODEL,
     "a corpus folder needs train.txt"),
    ("label-empty", SYN + OK_MODEL + 'label = " "\n', "label is empty"),
    ("label-newline", SYN + OK_MODEL + 'label = "a\\nb"\n', "control characters"),
    ("label-too-long", SYN + OK_MODEL + f'label = "{"x" * 150}"\n', "150 characters"),
    ("budget-seconds-zero", SYN + OK_MODEL + "budget = { seconds = 0 }\n", "seconds"),
    ("budget-tokens-negative", SYN + OK_MODEL + "budget = { tokens = -1 }\n", "tokens"),
    ("budget-steps-zero", SYN + OK_MODEL + "budget = { steps = 0 }\n", "steps"),
    ("budget-seconds-nan", SYN + OK_MODEL + "budget = { seconds = nan }\n", "seconds"),
    ("budget-unknown-key", SYN + OK_MODEL + "budget = { secs = 3 }\n", "'secs'"),
    ("budget-not-table", SYN + OK_MODEL + "budget = 5\n", "'budget' must be"),
    ("config-unknown-key", SYN + OK_MODEL + "config = { nope = 1 }\n", "'nope'"),
    ("config-order-zero", SYN + OK_MODEL + "config = { order = 0 }\n", "order"),
    ("config-order-huge", SYN + OK_MODEL + "config = { order = 99999999999999999999 }\n",
     "order"),
    ("config-wrong-type", SYN + OK_MODEL + 'config = { order = "five" }\n', "'order' must be"),
    ("lstm-batch-zero", SYN + '[[models]]\nname = "lstm"\nconfig = { batch_size = 0 }\n',
     "batch_size"),
    ("lstm-betas-one-value", SYN + '[[models]]\nname = "lstm"\nconfig = { betas = [0.9] }\n',
     "betas"),
    ("lstm-dropout-above-one", SYN + '[[models]]\nname = "lstm"\nconfig = { dropout = 1.5 }\n',
     "dropout"),
    ("lstm-lr-negative", SYN + '[[models]]\nname = "lstm"\nconfig = { lr = -1.0 }\n', "lr"),
    ("hmm-states-zero", SYN + '[[models]]\nname = "hmm"\nconfig = { states = 0 }\n', "states"),
    ("hf-path-missing", SYN + '[[models]]\nname = "hf:/no/such/model/folder"\n',
     "/no/such/model/folder"),
    ("model-datasets-empty", SYN + OK_MODEL + "datasets = []\n", "datasets is empty"),
    ("model-dataset-not-in-matrix", SYN + OK_MODEL + 'datasets = ["ptb"]\n',
     "not in [matrix] datasets"),
    ("model-threads-negative", SYN + OK_MODEL + "threads = -2\n", "threads must be"),
    ("model-time-limit-zero", SYN + OK_MODEL + "time_limit = 0\n", "time_limit must be"),
    ("unknown-task", SYN + 'tasks = ["clozee"]\n' + OK_MODEL, "unknown task 'clozee'"),
    ("model-unknown-task", SYN + OK_MODEL + 'tasks = ["sentiment"]\n', "unknown task"),
    ("task-twice", SYN + 'tasks = ["cloze", "cloze"]\n' + OK_MODEL, "tasks lists a task twice"),
    ("fractions-empty", SYN + "fractions = []\n" + OK_MODEL, "fractions is empty"),
    ("fraction-zero", SYN + "fractions = [0.0, 1.0]\n" + OK_MODEL, "fractions must be in (0, 1]"),
    ("fraction-above-one", SYN + OK_MODEL + "fractions = [1.5]\n", "fractions must be in (0, 1]"),
    ("fraction-twice", SYN + "fractions = [0.5, 0.5]\n" + OK_MODEL, "lists a value twice"),
    ("unknown-dataset", '[matrix]\ndatasets = ["ptbb"]\n' + OK_MODEL, "unknown dataset 'ptbb'"),
    ("text-corpus-missing", '[matrix]\ndatasets = ["text:/no/such/corpus.txt"]\n' + OK_MODEL,
     "no such file or folder"),
    ("text-corpus-empty-path", '[matrix]\ndatasets = ["text:"]\n' + OK_MODEL,
     "no such file or folder"),
    ("malformed-toml", '[matrix]\ndatasets = ["synthetic"\n' + OK_MODEL, "malformed TOML"),
    ("duplicate-key", '[matrix]\nseeds = [0]\nseeds = [1]\n' + OK_MODEL, "malformed TOML"),
]
if _cuda_available():  # on a GPU machine 'cuda' exists; on CI it is a clear error
    MATRIX_CASES = [c for c in MATRIX_CASES if c[0] != "device-cuda-99"]
else:
    MATRIX_CASES.append(("device-cuda", '[matrix]\ndevices = ["cuda"]\n' + OK_MODEL,
                         "'cuda' is not available"))


def _one_error_line(capsys, rc: int) -> str:
    out = capsys.readouterr()
    assert rc == 2, out.err
    assert "Traceback" not in out.err + out.out
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1, out.err
    assert re.match(r"lmladder( \w+)?: error: ", lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("case,body,needle", MATRIX_CASES, ids=[c[0] for c in MATRIX_CASES])
def test_bad_matrix_is_one_line_naming_file_and_key(tmp_path, capsys, case, body, needle):
    path = tmp_path / "m.toml"
    path.write_text(body)
    with pytest.raises(MatrixError):
        load_matrix(str(path))
    line = _one_error_line(capsys, main(["run", str(path), "--results", str(tmp_path / "r")]))
    assert needle in line and str(path) in line
    assert not (tmp_path / "r").exists()  # found before anything ran


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _good_matrix(tmp_path: Path) -> Path:
    return _file(tmp_path, "good.toml", (SYN + OK_MODEL).encode())


def _results_with_records(tmp_path: Path) -> Path:
    res = tmp_path / "res"
    assert main(["run", str(_good_matrix(tmp_path)), "--results", str(res), "--no-report"]) == 0
    return res


CLI_CASES = [
    # (case id, function tmp_path -> argv, needle)
    ("matrix-not-utf8",
     lambda t: ["run", str(_file(t, "m.toml", b"[matrix]\ndescription = '\xff'\n"))],
     "not UTF-8"),
    ("matrix-name-dots", lambda t: ["run", str(_file(t, "...toml", (SYN + OK_MODEL).encode()))],
     "no usable matrix name"),
    ("matrix-name-hidden", lambda t: ["run", str(_file(t, ".m.toml", (SYN + OK_MODEL).encode()))],
     "no usable matrix name"),
    ("matrix-is-folder", lambda t: ["run", str(t)], "is a folder"),
    ("matrix-unknown-name", lambda t: ["run", "quik"], "unknown matrix 'quik'"),
    ("results-is-a-file", lambda t: ["run", str(_good_matrix(t)), "--results",
                                     str(_file(t, "f.txt", b"x"))], "is a file"),
    ("data-dir-missing", lambda t: ["run", str(_good_matrix(t)), "--data-dir", str(t / "no")],
     "no such folder"),
    ("threads-zero", lambda t: ["run", str(_good_matrix(t)), "--threads", "0"],
     "must be a positive number"),
    ("threads-word", lambda t: ["run", str(_good_matrix(t)), "--threads", "two"],
     "is not a number"),
    ("time-limit-negative", lambda t: ["run", str(_good_matrix(t)), "--time-limit", "-3"],
     "must be a positive number"),
    ("time-limit-nan", lambda t: ["run", str(_good_matrix(t)), "--time-limit", "nan"],
     "must be a positive number"),
    ("memory-limit-word", lambda t: ["run", str(_good_matrix(t)), "--memory-limit", "lots"],
     "is not a number"),
    ("only-nobody", lambda t: ["run", str(_good_matrix(t)), "--only", "nobody"],
     "no model matches"),
    ("report-missing-folder", lambda t: ["report", str(t / "nope")], "no such folder"),
    ("report-of-a-file", lambda t: ["report", str(_file(t, "f.txt", b"x"))], "is a file"),
    ("report-empty-folder", lambda t: ["report", str(t)], "no readable result records"),
    ("report-output-is-folder", lambda t: ["report", str(_results_with_records(t)), "-o", str(t)],
     ""),
    ("task-unknown-model", lambda t: ["task", "cloze", "kn9", "--dataset", "synthetic"],
     "unknown model 'kn9'"),
    ("task-unknown-task", lambda t: ["task", "clozee", "kn3", "--dataset", "synthetic"],
     "unknown task 'clozee'"),
    ("task-seconds-zero", lambda t: ["task", "cloze", "kn3", "--seconds", "0"],
     "must be a positive number"),
    ("task-seed-negative", lambda t: ["task", "cloze", "kn3", "--seed", "-1"], "must be from 0"),
    ("task-unknown-dataset", lambda t: ["task", "cloze", "kn3", "--dataset", "ptbb"],
     "unknown dataset 'ptbb'"),
    ("list-unknown", lambda t: ["list", "modells"], "invalid choice: 'modells'"),
    ("no-command", lambda t: [], "required"),
    ("unknown-flag", lambda t: ["run", "quick", "--fast"], "unrecognized arguments: --fast"),
]


@pytest.mark.parametrize("case,argv,needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_is_one_line(tmp_path, capsys, monkeypatch, case, argv, needle):
    monkeypatch.chdir(tmp_path)  # a default results folder would land here
    args = argv(tmp_path)
    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as exit_:  # argparse's errors
        rc = exit_.code
    line = _one_error_line(capsys, rc)
    assert needle in line


def test_at_least_sixty_bad_inputs_are_covered():
    assert len(MATRIX_CASES) + len(CLI_CASES) >= 60


# ---- property-based: the loader and the config checker never fail any other way ------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
_matrix_keys = st.sampled_from(["description", "datasets", "seeds", "devices", "threads",
                                "time_limit", "memory_limit_mib", "bogus"])
_model_keys = st.sampled_from(["name", "label", "config", "budget", "datasets", "threads",
                               "time_limit", "bogus"])


def _toml_value(v) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, repr(v)) if v == v else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    matrix=st.dictionaries(_matrix_keys, _values, max_size=4),
    models=st.lists(st.dictionaries(_model_keys, _values | st.sampled_from(
        ["kn3", "wb3", "lstm", "hmm", "unigram"]), max_size=4), max_size=3),
)
def test_matrix_loader_accepts_or_names_the_problem(tmp_path, matrix, models):
    lines = ["[matrix]"] + [f"{k} = {_toml_value(v)}" for k, v in matrix.items()]
    for m in models:
        lines += ["[[models]]"] + [f"{k} = {_toml_value(v)}" for k, v in m.items()]
    path = tmp_path / "p.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        loaded = load_matrix(str(path))
    except MatrixError as err:
        assert str(path) in str(err) and "\n" not in str(err)
    except registry.UnknownNameError as err:  # a matrix name that is not a file cannot happen
        raise AssertionError(err) from err
    else:
        assert loaded.models and loaded.spec.seeds


@settings(max_examples=200, deadline=None)
@given(values=st.dictionaries(st.sampled_from(["tokens", "steps", "seconds", "minutes"]),
                              _scalars, max_size=3))
def test_budget_checker_accepts_only_positive_limits(values):
    try:
        budget = build_config(Budget, values, where="budget")
    except ConfigError as err:
        assert "budget" in str(err)
    else:
        for v in (budget.tokens, budget.steps, budget.seconds):
            assert v is None or (v > 0 and v < float("inf"))


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(["kn3", "wb3", "laplace2", "lstm", "gru", "transformer", "hmm",
                             "hmm-hmmlearn"]),
       values=st.dictionaries(st.sampled_from(["order", "batch_size", "lr", "dropout", "states",
                                               "betas", "seq_len", "layers", "hidden",
                                               "max_iterations", "bogus"]), _values, max_size=3))
def test_model_config_checker_names_the_key(name, values):
    klass = registry.model_class(name)
    merged = registry.resolved_config(name, values)
    try:
        build_config(klass.Config, merged, where=f"{name}.config")
    except ConfigError as err:
        assert f"{name}.config" in str(err)


def test_matrix_cases_are_loaded_before_any_cell(tmp_path):
    """A mistake in the last model stops the run before the first cell is computed."""
    body = SYN + OK_MODEL + '[[models]]\nname = "wb3"\nbudget = { seconds = -1 }\n'
    path = tmp_path / "m.toml"
    path.write_text(textwrap.dedent(body))
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()
