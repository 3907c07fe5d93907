"""The n-gram whole programs (benchmarks/perf/ngram_tools.py's estimate, lmladder score): text in,
the same vocabulary and ids as the dataset loader (the compiled reader of
baselines/ngram_kernels.pyx, splitting as ``str.split``), the same scores as the model, one-line
errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from lmladder.api import Vocab
from lmladder.baselines import ngram_image
from lmladder.baselines.ngram import NGramLM
from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.data import build_word_vocab, word_split
from lmladder.perf import ngram_tools
from tests.test_ngram import markov_stream

TEXT = "b a c\n\n a  b\td <unk>\nc c a"  # a blank line, odd spaces, <unk>, no final newline


def lines_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.split("\n")]


def test_vocabulary_and_ids_equal_the_dataset_loaders():
    stream = markov_stream(3000, 12, seed=5)
    text = " ".join(stream).replace(" <eos> ", "\n").replace("<eos>", "\n") + "\n" + TEXT
    lines = lines_of(text.removesuffix("\n"))
    vocab, ids = ngram_tools.read_vocab_and_ids(io.StringIO(text))
    assert vocab == build_word_vocab(lines)
    np.testing.assert_array_equal(ids, word_split("train", lines, vocab).ids)


def read_ids(data: bytes, vocab: Vocab) -> np.ndarray:
    """The compiled reader's ids, through the image of a uniform unigram model on ``vocab``."""
    v = len(vocab)
    tables = BackoffTables(v, [np.arange(v)], [np.full(v, -np.log(v))], [np.zeros(v)])
    return ngram_image.read_ids(ngram_image.build(tables, vocab), data)


def python_ids(text: str, vocab: Vocab) -> np.ndarray:
    """The reference reading: ``str.split`` per ``\n``-line, a boundary after every line."""
    lines = text.split("\n")
    if text.endswith("\n") or not text:
        lines.pop()  # no line after the last line end
    words = [w for line in lines for w in (*line.split(), vocab.boundary)]
    return np.array([vocab.index.get(w, vocab.unk_id) for w in words], dtype=np.int64)


# every character str.split() splits on that is not ASCII, a CRLF, non-ASCII words, a word that
# only starts like a space (U+2030), blank lines, no final newline
ODD_TEXT = ("caf\u00e9 a\u00a0b\u0085c\u1680a\u2000b\u200ac\u2028a\u2029b\u202fc\u205fa"
            "\u3000b\r\n\x0b\x0c\x1c\x1d\x1e\x1f\t \u2030a na\u00efve\n\n\u00e9t\u00e9 zz")


@pytest.mark.parametrize("text", [TEXT, ODD_TEXT, ODD_TEXT + "\n", "", "\n", " ", "a",
                                  "a\n" * 300])
def test_compiled_reader_splits_as_str_split(text):
    vocab = Vocab(["<eos>", "<unk>", "a", "b", "c", "caf\u00e9", "na\u00efve", "\u2030a",
                   *(f"w{i}" for i in range(100))], boundary="<eos>", unk="<unk>")
    np.testing.assert_array_equal(read_ids(text.encode(), vocab),
                                  python_ids(text, vocab))


def test_read_ids_marks_every_line_and_maps_unknown_words_to_unk():
    vocab, _ = ngram_tools.read_vocab_and_ids(io.StringIO("a b\nc\n"))
    ids = read_ids(TEXT.encode(), vocab)
    words = ["b", "a", "c", "<eos>", "<eos>", "a", "b", "<unk>", "<unk>", "<eos>",
             "c", "c", "a", "<eos>"]  # "d" is unknown; the blank line is one <eos>
    np.testing.assert_array_equal(ids, vocab.encode(words))


def test_read_ids_uses_the_vocabularys_boundary_and_refuses_words_a_closed_one_lacks():
    vocab = Vocab(["</s>", "a", "b"], boundary="</s>")
    np.testing.assert_array_equal(read_ids(b"a b\n\na", vocab),
                                  [1, 2, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="line 2: the word 'c\u00e9' is not in the vocabulary"):
        read_ids("a b\na c\u00e9\n".encode(), vocab)


def test_estimate_then_score_every_token_as_the_model_does(tmp_path, capsys):
    from lmladder import query

    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(" ".join(markov_stream(2000, 6, seed=1)).replace(" <eos>", "\n"))
    test.write_text(TEXT.replace("d", "w1"))
    ngram_tools.main(["estimate", "--order", "3", "--text", str(train), "--out",
                      str(tmp_path / "m"), "--arpa", str(tmp_path / "m.arpa")])
    assert "fit" in capsys.readouterr().err
    assert (tmp_path / "m" / ngram_image.FILE_NAME).is_file()
    model = NGramLM.load(tmp_path / "m")
    with open(train) as f:
        vocab, ids = ngram_tools.read_vocab_and_ids(f)
    direct = NGramLM(order=3)
    direct.fit(ids, vocab)
    for a, b in zip(model.tables_.logp, direct.tables_.logp, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "m.arpa").read_text().startswith("\\data\\")

    assert query.main([str(tmp_path / "m"), str(test)]) == 0
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    lp = model.token_logprobs(read_ids(test.read_bytes(), model.vocab_))
    assert int(out["tokens"]) == len(lp) == 14
    assert float(out["log10_prob"]) == pytest.approx(lp.sum() / math.log(10), abs=1e-6)
    assert float(out["perplexity"]) == pytest.approx(math.exp(-lp.mean()), rel=1e-9)


@pytest.mark.parametrize("argv,message", [
    (["estimate", "--text", "/no/such.txt", "--out", "x"], "--text /no/such.txt: cannot read"),
    (["estimate", "--order", "0", "--text", "t", "--out", "x"], "--order 0: must be in"),
])
def test_errors_are_one_line(argv, message):
    with pytest.raises(SystemExit) as err:
        ngram_tools.main(argv)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_benchmark_names_what_is_missing_without_kenlm(tmp_path):
    from lmladder.perf.ngram import find_kenlm

    assert find_kenlm(None) == ({}, "no --kenlm-bin given (the folder holding lmplz, "
                                    "build_binary and query)")
    (tmp_path / "lmplz").write_text("")
    programs, why = find_kenlm(str(tmp_path))
    assert programs == {} and all(f"{tmp_path}/{p}" in why for p in ("lmplz", "query"))


def test_benchmark_reads_both_query_summaries():
    from lmladder.perf.ngram import query_figures

    kenlm = ("This binary file contains probing hash tables.\n"
             "Perplexity including OOVs:\t141.1862070921484\n"
             "Perplexity excluding OOVs:\t141.1862070921484\nOOVs:\t0\nTokens:\t1648600\n")
    ours = "tokens\t1648600\nlog10_prob\t-3544146.753200\nperplexity\t141.1860523\n"
    assert query_figures(kenlm) == {"ppl": 141.1862070921484, "tokens": 1648600}
    assert query_figures(ours) == {"ppl": 141.1860523, "tokens": 1648600}
