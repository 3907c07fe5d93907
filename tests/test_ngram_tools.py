"""The n-gram whole programs (benchmarks/perf/ngram_tools.py): text in, the same vocabulary and
ids as the dataset loader, the same scores as the model, one-line errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from lmladder.api import Vocab
from lmladder.baselines.ngram import NGramLM
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


def test_read_ids_marks_every_line_and_maps_unknown_words_to_unk():
    vocab, _ = ngram_tools.read_vocab_and_ids(io.StringIO("a b\nc\n"))
    ids = ngram_tools.read_ids(io.StringIO(TEXT), vocab)
    words = ["b", "a", "c", "<eos>", "<eos>", "a", "b", "<unk>", "<unk>", "<eos>",
             "c", "c", "a", "<eos>"]  # "d" is unknown; the blank line is one <eos>
    np.testing.assert_array_equal(ids, vocab.encode(words))


def test_read_ids_uses_the_vocabularys_boundary_and_refuses_words_a_closed_one_lacks():
    vocab = Vocab(["</s>", "a", "b"], boundary="</s>")
    np.testing.assert_array_equal(ngram_tools.read_ids(io.StringIO("a b\n\na"), vocab),
                                  [1, 2, 0, 0, 1, 0])
    with pytest.raises(ValueError, match="'c' is not in the vocabulary"):
        ngram_tools.read_ids(io.StringIO("a c\n"), vocab)


def test_estimate_then_query_scores_every_token_as_the_model_does(tmp_path, capsys, monkeypatch):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(" ".join(markov_stream(2000, 6, seed=1)).replace(" <eos>", "\n"))
    test.write_text(TEXT.replace("d", "w1"))
    ngram_tools.main(["estimate", "--order", "3", "--text", str(train), "--out",
                      str(tmp_path / "m"), "--arpa", str(tmp_path / "m.arpa")])
    assert "fit" in capsys.readouterr().err
    model = NGramLM.load(tmp_path / "m")
    with open(train) as f:
        vocab, ids = ngram_tools.read_vocab_and_ids(f)
    direct = NGramLM(order=3)
    direct.fit(ids, vocab)
    for a, b in zip(model.tables_.logp, direct.tables_.logp, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "m.arpa").read_text().startswith("\\data\\")

    monkeypatch.setattr("sys.stdin", io.StringIO(test.read_text()))
    ngram_tools.main(["query", str(tmp_path / "m")])
    out = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    lp = model.token_logprobs(ngram_tools.read_ids(io.StringIO(test.read_text()), model.vocab_))
    assert int(out["tokens"]) == len(lp) == 14
    assert float(out["log10_prob"]) == pytest.approx(lp.sum() / math.log(10), abs=1e-6)
    assert float(out["perplexity"]) == pytest.approx(math.exp(-lp.mean()), rel=1e-9)


@pytest.mark.parametrize("argv,message", [
    (["estimate", "--text", "/no/such.txt", "--out", "x"], "--text /no/such.txt: cannot read"),
    (["estimate", "--order", "0", "--text", "t", "--out", "x"], "--order 0: must be in"),
    (["query", "/no/such/folder"], "/no/such/folder: not an n-gram model folder"),
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
