"""Hostile inputs, round three (issue 23): silent accepts, internal errors, unclear messages.

Each class is pinned by its case from the issue and a few variants: a mistake is one line on
stderr, naming the file or key, exit code 2 and no traceback; a broken record is left out of
every report with a line naming its file; a cell that died of its memory limit says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lmladder.cli import main
from lmladder.data import corpus_sha256
from lmladder.isolate import memory_limit_explains
from lmladder.record import ErrorInfo
from lmladder.results import confusable, read_record, scan_records
from tests.helpers import write_matrix

SYN = {"datasets": ["synthetic"]}


def _one_error_line(capsys, rc: int, *, code: int = 2) -> str:
    out = capsys.readouterr()
    assert rc == code, out.err
    assert "Traceback" not in out.err + out.out
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1, out.err
    assert re.match(r"lmladder( \w+)?: error: ", lines[0]), lines[0]
    return lines[0]


def _main(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's errors
        return exit_.code


@contextlib.contextmanager
def _deadline(seconds: int = 20):
    """Fail instead of hanging where a FIFO would block a reader."""
    def hang(*_):
        raise AssertionError(f"blocked for {seconds} s (a FIFO was opened)")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _corpus(path: Path, words: str = "a b c d e f a b", lines: int = 20) -> Path:
    path.write_text("\n".join(f"{words} {i % 3}" for i in range(lines)) + "\n")
    return path


def _run(tmp_path, models, results="res", *extra, **matrix) -> int:
    path = write_matrix(tmp_path / "m.toml", models, **(matrix or SYN))
    return _main(["run", path, "--results", tmp_path / results, "--no-report", *extra])


# ---- silent accepts ---------------------------------------------------------------------------


def test_edited_text_corpus_is_a_new_cell_not_already_done(tmp_path, capsys):
    corpus = _corpus(tmp_path / "c.txt")
    ds = {"datasets": [f"text:{corpus}"]}
    assert _run(tmp_path, ["unigram"], **ds) == 0
    assert _run(tmp_path, ["unigram"], **ds) == 0
    assert "1 already done" in capsys.readouterr().err  # unchanged: done
    before = corpus_sha256(f"text:{corpus}")
    _corpus(corpus, words="x y z x y z w")
    assert corpus_sha256(f"text:{corpus}") != before
    assert _run(tmp_path, ["unigram"], **ds) == 0
    err = capsys.readouterr().err
    assert "1 cells run, 0 already done" in err, err
    (record,) = (tmp_path / "res").glob("*.json")  # the cell's record, now of the new text
    assert read_record(record).dataset["source"]["sha256"] == corpus_sha256(f"text:{corpus}")
    assert _run(tmp_path, ["unigram"], **ds) == 0
    assert "1 already done" in capsys.readouterr().err


def test_edited_corpus_whose_rerun_fails_keeps_the_old_record(tmp_path, capsys):
    corpus = _corpus(tmp_path / "c.txt")
    ds = {"datasets": [f"text:{corpus}"]}
    assert _run(tmp_path, ["unigram"], **ds) == 0
    (record,) = (tmp_path / "res").glob("*.json")
    before = record.read_bytes()
    corpus.write_text("\n" * 20)  # no words left: the rerun fails
    assert _run(tmp_path, ["unigram"], **ds) == 1
    assert "kept: " in capsys.readouterr().err and record.read_bytes() == before


def test_edited_corpus_folder_and_chars_corpus_change_the_hash(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        _corpus(folder / f"{split}.txt")
    for prefix in ("text:", "chars:"):
        before = corpus_sha256(f"{prefix}{folder}")
        assert before is not None and before == corpus_sha256(f"{prefix}{folder}")
    _corpus(folder / "test.txt", words="q r s")
    assert corpus_sha256(f"text:{folder}") != before
    assert corpus_sha256("synthetic") is None and corpus_sha256("ptb") is None


def _ok_results(tmp_path, name="res", label=None) -> Path:
    model = {"name": "unigram", **({"label": label} if label else {})}
    assert _run(tmp_path, [model], name) == 0
    return tmp_path / name


@pytest.mark.parametrize("ppl", [0.5, 0.0, -3.0, math.nan, math.inf, "Infinity", 1e-300])
def test_record_with_impossible_perplexity_is_left_out_naming_the_file(tmp_path, capsys, ppl):
    res = _ok_results(tmp_path)
    (path,) = res.glob("*.json")
    data = json.loads(path.read_text())
    data["metrics"]["test"]["ppl"] = ppl
    text = json.dumps(data)
    if ppl == "Infinity":
        text = text.replace('"Infinity"', "Infinity")
    path.write_text(text)
    scan = scan_records(res)
    assert scan.records == []
    assert len(scan.unreadable) == 1 and str(path) in scan.unreadable[0]
    assert "ppl" in scan.unreadable[0]
    capsys.readouterr()
    assert _main(["report", res, "-o", tmp_path / "r.html"]) == 2  # nothing left to rank


@pytest.mark.parametrize("how", ["same", "dot", "slash", "link"])
def test_compare_a_folder_with_itself_is_refused(tmp_path, capsys, how):
    res = _ok_results(tmp_path)
    other = {"same": res, "dot": res / ".", "slash": f"{res}/", "link": tmp_path / "ln"}[how]
    if how == "link":
        os.symlink(res, other)
    capsys.readouterr()
    line = _one_error_line(capsys, _main(["report", "--compare", res, other,
                                          "-o", tmp_path / "c.html"]))
    assert "same results folder" in line and str(res) in line
    assert not (tmp_path / "c.html").exists()


LOOKALIKES = [
    ("KN5", "КN5"),  # Cyrillic Ka
    ("KN5", "ΚΝ5"),  # Greek Kappa, Nu
    ("lstm", "ｌｓｔｍ"),  # fullwidth
    ("café", "cafe\u0301"),  # combining accent (NFKC)
    ("poem", "роеm"),  # Cyrillic er, o, ie
]


@pytest.mark.parametrize("first,second", LOOKALIKES)
def test_lookalike_labels_in_a_matrix_are_refused(tmp_path, capsys, first, second):
    path = write_matrix(tmp_path / "m.toml", [{"name": "unigram", "label": first},
                                              {"name": "kn3", "label": second}], **SYN)
    line = _one_error_line(capsys, _main(["run", path, "--results", tmp_path / "r"]))
    assert str(path) in line and "looks like" in line and "models[1]" in line
    assert not (tmp_path / "r").exists()


def test_distinct_labels_are_not_confusable():
    assert not confusable("KN5", "kn5")  # plain ASCII: case is visible
    assert not confusable("KN5", "KN6")
    assert not confusable("Łódź", "Lodz")  # a different letter, not a look-alike


def test_lookalike_label_among_records_is_left_out_naming_its_file(tmp_path):
    res = _ok_results(tmp_path, "res", label="KN5")
    _ok_results(tmp_path, "res2", label="КN5")  # Cyrillic
    (fake,) = (tmp_path / "res2").glob("*.json")
    data = json.loads(fake.read_text())
    data["cell"]["model"] = "kn3"  # another experiment under a look-alike label
    target = res / fake.name.replace("__", "__x", 1)
    target.write_text(json.dumps(data))
    scan = scan_records(res)
    assert [r.label for r in scan.records] == ["KN5"]
    assert len(scan.unreadable) == 1 and str(target) in scan.unreadable[0]
    assert "looks like" in scan.unreadable[0]


# -- hf: folders (transformers) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("hf")

    def tokenizer(n):
        vocab = {f"w{i}": i for i in range(n - 1)} | {"<|endoftext|>": n - 1}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                       eos_token="<|endoftext|>")

    def model(name, tokens=None, vocab=50):
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=vocab,
                                   n_positions=32, bos_token_id=vocab - 1,
                                   eos_token_id=vocab - 1)).save_pretrained(root / name)
        if tokens:
            tokenizer(tokens).save_pretrained(root / name)
        return root / name

    folders = {"none": model("none"), "small": model("small", 20), "big": model("big", 60),
               "mismatch": model("mismatch", 50)}
    config = json.loads((folders["mismatch"] / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=8,
                  num_attention_heads=2, num_hidden_layers=1, intermediate_size=16,
                  num_key_value_heads=2)
    (folders["mismatch"] / "config.json").write_text(json.dumps(config))
    return folders


def test_hf_folder_without_tokenizer_is_refused_at_load(tmp_path, capsys, hf_folders):
    path = write_matrix(tmp_path / "m.toml", [f"hf:{hf_folders['none']}"], **SYN)
    line = _one_error_line(capsys, _main(["run", path, "--results", tmp_path / "r"]))
    assert "no tokenizer" in line and "tokenizer.json" in line and str(hf_folders["none"]) in line


@pytest.mark.parametrize("case,needle", [("small", "20 tokens but the model 50"),
                                         ("big", "60 tokens but the model 50"),
                                         ("mismatch", "do not fit its config")])
def test_hf_tokenizer_or_weights_of_another_model_fail_the_cell(tmp_path, capsys, hf_folders,
                                                                 case, needle):
    assert _run(tmp_path, [f"hf:{hf_folders[case]}"], "res", "--in-process") == 1
    (path,) = (tmp_path / "res").glob("*.json")
    record = read_record(path)
    assert record.status == "failed" and needle in record.error.message
    assert "\n" not in record.error.message


# ---- internal errors --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    '[matrix]\ndatasets = ["synthetic"]\ndescription = ' + "[" * 3000 + "]" * 3000 + "\n",
    "[matrix]\nresources = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
])
def test_deeply_nested_matrix_is_one_line(tmp_path, capsys, body):
    path = tmp_path / "deep.toml"
    path.write_text(body + '[[models]]\nname = "kn3"\n')
    line = _one_error_line(capsys, _main(["run", path, "--results", tmp_path / "r"]))
    assert str(path) in line and "nested too deeply" in line


def test_deeply_nested_record_is_named_and_left_out(tmp_path):
    res = _ok_results(tmp_path)
    (path,) = res.glob("*.json")
    path.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    scan = scan_records(res)
    assert scan.records == [] and str(path) in scan.unreadable[0]


@pytest.mark.parametrize("option,value,needle", [
    ("--threads", "100000", "--threads"),
    ("--threads", "1025", "--threads"),
    ("--memory-limit", "1", "--memory-limit"),
    ("--memory-limit", "63", "--memory-limit"),
    ("--memory-limit", str(2**41), "--memory-limit"),
    ("--time-limit", "1e400", "--time-limit"),
    ("--max-seconds", "inf", "--max-seconds"),
])
def test_numeric_options_out_of_range_are_one_line(tmp_path, capsys, option, value, needle):
    path = write_matrix(tmp_path / "m.toml", ["unigram"], **SYN)
    line = _one_error_line(capsys, _main(["run", path, "--results", tmp_path / "r", option,
                                          value]))
    assert needle in line and value.removesuffix(".0") in line


def test_lmeval_without_lm_eval_names_the_extra(tmp_path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['lm_eval'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for args in (["--help"], []):
        out = subprocess.run([sys.executable, "-m", "lmladder.lmeval", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
        assert "pip install 'lmladder[lm-eval]'" in lines[0]


@pytest.mark.parametrize("dataset,needle", [
    ("text", "too few content words"),
    ("chars", "needs a word-level dataset"),
])
def test_task_refusing_a_corpus_is_one_line(tmp_path, capsys, dataset, needle):
    corpus = _corpus(tmp_path / "tiny.txt", words="a b c", lines=12)
    line = _one_error_line(capsys, _main(["task", "cloze", "unigram", "--dataset",
                                          f"{dataset}:{corpus}"]))
    assert needle in line and "cloze" in line


# ---- unclear messages -------------------------------------------------------------------------


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_fifo_or_device_as_matrix_is_not_a_regular_file(tmp_path, capsys):
    for target in (_fifo(tmp_path / "m.toml"), Path("/dev/null")):
        with _deadline():
            line = _one_error_line(capsys, _main(["run", target, "--results", tmp_path / "r"]))
        assert "not a regular file" in line and str(target) in line


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_fifo_as_corpus_is_not_a_regular_file(tmp_path, capsys, layout):
    if layout == "file":
        corpus = fifo = _fifo(tmp_path / "c.txt")
    else:
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        for split in ("valid", "test"):
            _corpus(corpus / f"{split}.txt")
        fifo = _fifo(corpus / "train.txt")
    path = write_matrix(tmp_path / "m.toml", ["unigram"], datasets=[f"text:{corpus}"])
    with _deadline():
        line = _one_error_line(capsys, _main(["run", path, "--results", tmp_path / "r"]))
        assert "not a regular file" in line and str(fifo) in line
        line = _one_error_line(capsys, _main(["task", "cloze", "unigram", "--dataset",
                                              f"text:{corpus}"]))
    assert "not a regular file" in line and str(fifo) in line
    assert corpus_sha256(f"text:{corpus}") is None


def test_fifo_named_like_a_record_is_named_not_read(tmp_path):
    res = _ok_results(tmp_path)
    fifo = _fifo(res / "X__synthetic__seed0__cpu__0123456789abcdef.json")
    with _deadline():
        scan = scan_records(res)
        assert len(scan.records) == 1
        assert any(str(fifo) in u and "not a regular file" in u for u in scan.unreadable)
        with pytest.raises(ValueError, match="not a regular file"):
            read_record(fifo)


def test_disk_full_names_the_record_being_written(tmp_path, capsys, monkeypatch):
    import errno

    import lmladder.results

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lmladder.results, "atomic_write", full)
    path = write_matrix(tmp_path / "m.toml", ["unigram"], **SYN)
    rc = _main(["run", path, "--results", tmp_path / "r", "--no-report", "--in-process"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after the cell's progress lines
    assert line.startswith("lmladder: error: ") and "No space left on device" in line
    assert str(tmp_path / "r") in line and ".json" in line


def test_cell_under_a_too_small_memory_limit_says_so(tmp_path, capsys):
    lstm = {"name": "lstm", "config": {"hidden": 1024}, "budget": {"steps": 1}}
    assert _run(tmp_path, [lstm], "res", "--memory-limit", "64") == 1
    (path,) = (tmp_path / "res").glob("*.json")
    message = read_record(path).error.message
    assert "ran out of memory under --memory-limit 64 MiB" in message
    assert "raise the cell's memory limit" in message
    assert "ran out of memory under --memory-limit 64 MiB" in capsys.readouterr().err


@pytest.mark.parametrize("kind,message,explained", [
    ("MemoryError", "", True),
    ("RuntimeError", "could not create a primitive", True),
    ("OSError", "Could not find/load shared object file 'libllvmlite.so'", True),
    ("Killed", "killed by signal 9 (SIGKILL) — likely out of memory", True),
    ("Killed", "killed by signal 6 (SIGABRT) — a native library aborted", True),
    ("RuntimeError", "std::bad_alloc", True),
    ("RuntimeError", "DefaultCPUAllocator: can't allocate memory: you tried to allocate", True),
    ("ValueError", "order must be >= 1", False),
    ("TimeLimit", "exceeded the cell time limit of 5 s", False),
])
def test_memory_limit_explains_only_memory_failures(kind, message, explained):
    line = memory_limit_explains(kind, message, 64)
    assert (line is not None) == explained
    if explained:
        assert "--memory-limit 64 MiB" in line and "raise the cell's memory limit" in line
    assert memory_limit_explains(kind, message, None) is None  # no limit: as it was


def test_runner_rewrites_a_memory_death_and_keeps_other_errors():
    from lmladder.results import parse_record
    from lmladder.runner import _say_out_of_memory
    from tests.records import v3_record

    ok = parse_record(v3_record())
    rec = ok.replace(status="failed", error=ErrorInfo("RuntimeError", "could not create a "
                                                                      "primitive"))
    assert "--memory-limit 128 MiB" in _say_out_of_memory(rec, 128).error.message
    other = ok.replace(status="failed", error=ErrorInfo("ValueError", "bad order"))
    assert _say_out_of_memory(other, 128) is other
    assert _say_out_of_memory(rec, None) is rec


def test_force_with_missing_data_keeps_the_record_and_exits_1(tmp_path, capsys, monkeypatch):
    import lmladder.cell
    from lmladder.data import DataNotFoundError

    res = _ok_results(tmp_path)
    (path,) = res.glob("*.json")
    before = path.read_bytes()

    def gone(name, data_dir=None):
        raise DataNotFoundError(f"dataset {name!r} is not on this machine")

    monkeypatch.setattr(lmladder.cell, "load_dataset", gone)
    capsys.readouterr()
    assert _run(tmp_path, ["unigram"], "res", "--force") == 1
    err = capsys.readouterr().err
    assert "kept: " in err and "the ok record is kept" in err
    assert path.read_bytes() == before
    assert len(list(res.glob("*.skipped-*.json"))) == 1
