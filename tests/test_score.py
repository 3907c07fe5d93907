"""``lmladder score`` (benchmarks/query.py) and the saved n-gram image it maps
(baselines/ngram_image.py): the same figures as the model's own ``token_logprobs`` on every path
(the mapped image streamed in blocks, a model loaded in full, another family), lean imports, and
one-line errors for every bad input."""

from __future__ import annotations

import json
import math
import mmap
import subprocess
import sys

import numpy as np
import pytest

from lmladder import query
from lmladder.api import Vocab
from lmladder.baselines import ngram_image
from lmladder.baselines.ngram import NGramLM
from lmladder.baselines.uniform import UniformLM
from tests.test_ngram import markov_stream

# blank lines, odd spaces, OOVs (d, zz), a literal <unk>, CRLF, no final newline
TEXT = "w1 w0 w2\n\n w0  w1\td <unk>\r\nw2 w2 w0\n" * 40 + "w0 w1 w3 zz"


def reference(model, text: str) -> tuple[int, int, float]:
    """tokens, OOVs and total ln p by the dataset loaders' reading and the model itself."""
    vocab = model.vocab_
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    words = [w for line in lines for w in (*line.split(), vocab.boundary)]
    ids = np.array([vocab.index.get(w, vocab.unk_id) for w in words], dtype=np.int64)
    oov = sum(w not in vocab.index for w in words)
    return len(ids), oov, float(np.sum(model.token_logprobs(ids)))


def fitted(order: int = 3, **config) -> NGramLM:
    words = markov_stream(3000, 6, seed=3)
    vocab = Vocab(["<eos>", "<unk>", *sorted({w for w in words} - {"<eos>"})], boundary="<eos>",
                  unk="<unk>")
    model = NGramLM(order=order, **config)
    model.fit(vocab.encode(words), vocab)
    return model


def scored(capsys, folder, text_path, *extra) -> dict:
    assert query.main([str(folder), str(text_path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "test.txt"
    path.write_text(TEXT)
    return path


@pytest.mark.parametrize("config", [{}, {"cross_boundary": True}, {"smoothing": "add-k"},
                                    {"smoothing": "witten-bell", "order": 5}])
@pytest.mark.parametrize("block", [query.BLOCK, 7, 64])  # whole, word by word, a few lines
def test_the_mapped_image_scores_as_the_model_in_blocks_of_any_size(
        tmp_path, capsys, monkeypatch, text_file, config, block):
    model = fitted(**config)
    model.save(tmp_path / "m")
    monkeypatch.setattr(query, "BLOCK", block)
    lean = scored(capsys, tmp_path / "m", text_file)
    tokens, oov, total = reference(model, text_file.read_text())
    assert (lean["tokens"], lean["oov"]) == (tokens, oov) and oov == 41
    assert lean["log10_prob"] == pytest.approx(total / math.log(10), rel=1e-12)
    assert lean["perplexity"] == pytest.approx(math.exp(-total / tokens), rel=1e-12)


def test_a_model_without_its_image_or_of_another_family_scores_the_same(tmp_path, capsys,
                                                                       text_file):
    model = fitted()
    model.save(tmp_path / "m")
    lean = scored(capsys, tmp_path / "m", text_file)
    (tmp_path / "m" / ngram_image.FILE_NAME).unlink()
    loaded = scored(capsys, tmp_path / "m", text_file)
    assert loaded["tokens"] == lean["tokens"] and loaded["oov"] == lean["oov"]
    assert loaded["log10_prob"] == pytest.approx(lean["log10_prob"], rel=1e-12)
    uniform = UniformLM()
    uniform.fit(np.zeros(1, dtype=np.int64), model.vocab_)
    uniform.save(tmp_path / "u")
    flat = scored(capsys, tmp_path / "u", text_file)
    assert flat["perplexity"] == pytest.approx(len(model.vocab_))


def test_a_character_model_reads_characters(tmp_path, capsys):
    vocab = Vocab(["\n", "a", "b", " "], boundary="\n", separator="")
    model = NGramLM(order=2, smoothing="add-k")
    model.fit(vocab.encode(list("ab a\nba b\n" * 20)), vocab)
    model.save(tmp_path / "c")
    (tmp_path / "t.txt").write_text("ab\nb a\n")
    out = scored(capsys, tmp_path / "c", tmp_path / "t.txt")
    lp = model.token_logprobs(vocab.encode(list("ab\nb a\n")))
    assert out["tokens"] == 7
    assert out["log10_prob"] == pytest.approx(lp.sum() / math.log(10), rel=1e-12)


def test_stdin_and_plain_output(tmp_path, capsys, monkeypatch, text_file):
    fitted().save(tmp_path / "m")
    monkeypatch.setattr("sys.stdin", open(text_file, "rb"))  # noqa: SIM115
    assert query.main([str(tmp_path / "m"), "-", "--phases"]) == 0
    out, err = capsys.readouterr()
    lines = dict(line.split("\t") for line in out.splitlines())
    assert list(lines) == ["tokens", "oov", "log10_prob", "perplexity"]
    assert err.startswith("seconds\topen ") and "read_score" in err


def test_score_imports_neither_numpy_torch_pandas_matplotlib_nor_the_report(tmp_path,
                                                                            text_file):
    fitted().save(tmp_path / "m")
    code = ("import sys\nfrom lmladder.__main__ import main\n"
            f"assert main(['score', {str(tmp_path / 'm')!r}, {str(text_file)!r}]) == 0\n"
            "heavy = ('numpy', 'torch', 'pandas', 'matplotlib', 'lmladder.reports', "
            "'lmladder.registry', 'lmladder.cli', 'lmladder.checkpoint')\n"
            "print(sorted(m for m in sys.modules if m.startswith(heavy)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_the_saved_image_is_mapped_when_loaded_and_rebuilt_when_it_does_not_fit(tmp_path,
                                                                               caplog):
    model = fitted()
    model.save(tmp_path / "m")
    loaded = NGramLM.load(tmp_path / "m")
    assert isinstance(loaded.tables_._hashed.buffer, mmap.mmap)
    test = model.vocab_.encode(markov_stream(500, 6, seed=4))
    np.testing.assert_array_equal(loaded.token_logprobs(test), model.token_logprobs(test))
    fitted(order=2).save(tmp_path / "other")
    (tmp_path / "m" / ngram_image.FILE_NAME).write_bytes(
        (tmp_path / "other" / ngram_image.FILE_NAME).read_bytes())
    again = NGramLM.load(tmp_path / "m")
    assert "does not fit the model's state" in caplog.text
    assert again.tables_._hashed is None
    np.testing.assert_array_equal(again.token_logprobs(test), model.token_logprobs(test))


def test_a_damaged_image_is_named_and_the_model_is_scored_from_its_state(tmp_path, capsys,
                                                                        caplog, text_file):
    model = fitted()
    model.save(tmp_path / "m")
    path = tmp_path / "m" / ngram_image.FILE_NAME
    good = scored(capsys, tmp_path / "m", text_file)
    data = path.read_bytes()
    for damaged in (data[: len(data) // 2], data[:100], b"", b"x" * len(data),
                    data[:8] + (99).to_bytes(8, "little") + data[16:]):
        path.write_bytes(damaged)
        caplog.clear()
        assert scored(capsys, tmp_path / "m", text_file)["log10_prob"] == pytest.approx(
            good["log10_prob"], rel=1e-12)
        assert str(path) in caplog.text and "rebuilds the tables from state.npz" in caplog.text
    # as a command, the one line that says so is on stderr
    done = subprocess.run([sys.executable, "-m", "lmladder", "score", str(tmp_path / "m"),
                           str(text_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.count("\n") == 1 and str(path) in done.stderr


def test_random_bytes_in_the_header_never_crash_the_reader(tmp_path):
    """Every single-byte change of the header is refused or read; probing stops after a pass."""
    model = fitted()
    data = bytearray(memoryview(ngram_image.build(model.tables_, model.vocab_).buffer).cast("B"))
    rng = np.random.default_rng(0)
    header = 176 + 40 * 2
    for i in range(header):
        changed = bytearray(data)
        changed[i] ^= int(rng.integers(1, 256))
        try:
            image = ngram_image.Image(np.frombuffer(bytes(changed), dtype=np.int64))
        except (ngram_image.ImageError, ValueError):
            continue
        seq = np.array([0, 1, 2, 3, 1], dtype=np.int64)
        image.score(seq, np.minimum(np.arange(1, 5), image.order - 1).astype(np.int64),
                    np.empty(4))


def test_a_full_table_without_a_free_slot_does_not_hang(tmp_path):
    model = fitted()
    data = np.array(ngram_image.build(model.tables_, model.vocab_).buffer, copy=True)
    raw = data.view(np.uint8)
    image = ngram_image.Image(data)
    for j in range(2, image.order + 1):  # every key slot taken by a key nothing asks for
        fields = data[22 + 5 * (j - 2): 22 + 5 * (j - 1)]
        keys_at, slots, key = int(fields[0]), int(fields[2]), int(fields[4])
        raw[keys_at: keys_at + key * slots] = 0x7E
    image = ngram_image.Image(data)
    seq = model.vocab_.encode(markov_stream(200, 6, seed=5))
    out = np.empty(len(seq) - 1)
    image.score(seq, np.minimum(np.arange(1, len(seq)), 2).astype(np.int64), out)
    assert np.isfinite(out).all()


def test_closed_vocabularies_name_the_word_and_its_line(tmp_path, capsys):
    vocab = Vocab(["</s>", "a", "b"], boundary="</s>")
    model = NGramLM(order=2, smoothing="witten-bell")
    model.fit(vocab.encode(["a", "b", "</s>", "b", "a", "</s>"] * 10), vocab)
    model.save(tmp_path / "m")
    (tmp_path / "t.txt").write_text("a b\nb a\na c\u00e9 b\n")
    assert query.main([str(tmp_path / "m"), str(tmp_path / "t.txt")]) == 2
    err = capsys.readouterr().err
    assert err == (f"lmladder score: error: {tmp_path / 't.txt'} line 3: the word 'c\u00e9' is not "
                   "in the model's vocabulary, which has no unknown word to score it as\n")


@pytest.mark.parametrize("case,message", [
    ("no-folder", "does not exist; give a saved model folder"),
    ("file-as-model", "is not a folder"),
    ("no-model-json", "model.json: missing"),
    ("bad-json", "model.json: not valid JSON"),
    ("no-text", "cannot read (No such file or directory)"),
    ("text-folder", "is a folder; give a text file"),
    ("empty-text", "no words to score"),
    ("unknown-class", "is not a model lmladder knows"),
    ("damaged-state", "state.npz"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    fitted().save(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    (tmp_path / "t.txt").write_text("w0 w1\n")
    (tmp_path / "e.txt").write_text("  \n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.json").write_text("{")
    model, text = {
        "no-folder": (tmp_path / "nope", tmp_path / "t.txt"),
        "file-as-model": (tmp_path / "t.txt", tmp_path / "t.txt"),
        "no-model-json": (tmp_path / "empty", tmp_path / "t.txt"),
        "bad-json": (tmp_path / "bad", tmp_path / "t.txt"),
        "no-text": (tmp_path / "m", tmp_path / "none.txt"),
        "text-folder": (tmp_path / "m", tmp_path / "empty"),
        "empty-text": (tmp_path / "m", tmp_path / "e.txt"),
        "unknown-class": (tmp_path / "m", tmp_path / "t.txt"),
        "damaged-state": (tmp_path / "m", tmp_path / "t.txt"),
    }[case]
    if case == "unknown-class":
        meta = json.loads((tmp_path / "m" / "model.json").read_text())
        (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "class": "os:system"}))
    if case == "damaged-state":
        (tmp_path / "m" / ngram_image.FILE_NAME).unlink()
        (tmp_path / "m" / "state.npz").write_bytes(b"PK\x03\x04 not a zip")
    if case == "empty-text":
        (tmp_path / "e.txt").write_text("")
    assert query.main([str(model), str(text)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lmladder score: error:")


def test_the_full_command_line_scores_too(tmp_path, capsys, text_file):
    from lmladder.cli import main

    fitted().save(tmp_path / "m")
    lean = scored(capsys, tmp_path / "m", text_file)
    assert main(["score", str(tmp_path / "m"), str(text_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == lean
    assert main(["score", str(tmp_path / "nope"), str(text_file)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_save_refuses_a_planted_link_and_replaces_a_stale_image(tmp_path):
    model = fitted()
    model.save(tmp_path / "m")
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    path = tmp_path / "m" / ngram_image.FILE_NAME
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        model.save(tmp_path / "m")
    assert target.read_text() == "keep"
    path.unlink()
    path.write_bytes(b"stale")
    model.save(tmp_path / "m")
    built = ngram_image.build(model.tables_, model.vocab_)
    assert ngram_image.open_image(path).slots == built.slots


def test_bytes_that_are_not_utf8_are_an_oov_on_both_paths(tmp_path, capsys):
    fitted().save(tmp_path / "m")
    (tmp_path / "t.txt").write_bytes(b"w0 w1\xff w2\nw3 \xfe\xfe\n")
    lean = scored(capsys, tmp_path / "m", tmp_path / "t.txt")
    (tmp_path / "m" / ngram_image.FILE_NAME).unlink()
    loaded = scored(capsys, tmp_path / "m", tmp_path / "t.txt")
    assert lean["oov"] == loaded["oov"] == 2 and lean["tokens"] == loaded["tokens"] == 7
    assert lean["log10_prob"] == pytest.approx(loaded["log10_prob"], rel=1e-12)
