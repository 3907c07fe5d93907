"""KenLM/ARPA interop: lmladder's ARPA files in KenLM, ``arpa:PATH`` entries, ``export-arpa``.

The KenLM check fits lmladder's modified Kneser-Ney 5-gram on the first 150,000 tokens of PTB's
training split (the synthetic corpus where PTB is absent), writes it as ARPA, loads the file with
the ``kenlm`` Python module and compares ``kenlm.Model.full_scores`` (log10, one line at a time,
``<s>``/``</s>`` added by KenLM) with lmladder's per-token log-probabilities on 20,000 held-out
validation tokens: agreement to 1e-5 (7e-7 measured; KenLM stores single-precision floats).

``<unk>``: PTB's ``<unk>`` is an ordinary word of the vocabulary, written as ``<unk>``, which is
KenLM's own unknown word.  KenLM maps every word it does not know to it, so an out-of-vocabulary
word and ``<unk>`` itself get the probability lmladder learned for ``<unk>``
(:func:`test_kenlm_scores_unknown_words_as_unk`).

``kenlm`` is an optional extra (``pip install -e '.[kenlm]'``): without it the KenLM tests skip,
and under CI (``$CI`` set) they fail, as tests/test_browser.py does for its browser.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest

from lmladder import interop, registry
from lmladder.api import LanguageModel, Vocab
from lmladder.baselines.ngram import ArpaLM, NGramLM
from lmladder.corpus import Dataset
from lmladder.data import load_dataset
from tests import contract
from tests.conftest import require_extra, shared_data_dir

LN10 = np.log(10.0)
TRAIN_TOKENS, HELD_OUT = 150_000, 20_000


@pytest.fixture(scope="module")
def kenlm():
    return require_extra("kenlm", "kenlm")


@pytest.fixture(scope="module")
def corpus() -> Dataset:
    """PTB when the shared corpora are there, else the synthetic corpus (both word-level)."""
    folder = shared_data_dir()
    return load_dataset("ptb", folder) if folder else load_dataset("synthetic")


@pytest.fixture(scope="module")
def kn5(corpus) -> NGramLM:
    model = NGramLM(order=5)
    model.fit(corpus.train.ids[:TRAIN_TOKENS], corpus.vocab)
    return model


@pytest.fixture(scope="module")
def arpa_file(kn5, tmp_path_factory):
    return kn5.to_arpa(tmp_path_factory.mktemp("arpa") / "kn5.arpa")


def _lines(ids: np.ndarray, vocab: Vocab) -> list[list[str]]:
    """The complete lines of ``ids`` as words, without the boundary token."""
    ends = np.nonzero(ids == vocab.boundary_id)[0]
    return [vocab.decode(ids[a + 1 : b]) for a, b in zip([-1, *ends[:-1]], ends, strict=True)]


def kenlm_agreement(kenlm, arpa_file, model: NGramLM, ids: np.ndarray) -> tuple[float, int]:
    """Max |log10 p_KenLM - log10 p_lmladder| over the tokens of the complete lines of ``ids``
    (each line's ``</s>`` included), and the number of tokens compared."""
    vocab = model.vocab_
    ids = ids[: np.nonzero(ids == vocab.boundary_id)[0][-1] + 1]
    lm = kenlm.Model(str(arpa_file))
    theirs = [s for line in _lines(ids, vocab) for s, _, _ in lm.full_scores(" ".join(line))]
    ours = model.token_logprobs(ids) / LN10
    assert len(theirs) == len(ours)
    return float(np.abs(np.asarray(theirs) - ours).max()), len(ours)


# -- KenLM ---------------------------------------------------------------------------------------


def test_kenlm_agrees_with_lmladder(kenlm, kn5, arpa_file, corpus):
    diff, tokens = kenlm_agreement(kenlm, arpa_file, kn5, corpus.valid.ids[:HELD_OUT])
    print(f"KenLM vs lmladder on {corpus.name}: max |log10 diff| {diff:.2e} over {tokens:,} "
          "tokens")
    assert tokens > HELD_OUT * 0.9
    assert diff < 1e-5


def test_kenlm_scores_unknown_words_as_unk(kenlm, kn5, arpa_file, corpus):
    vocab = corpus.vocab
    lm = kenlm.Model(str(arpa_file))
    unk = vocab.unk or "<unk>"
    line = [w for w in vocab.decode(corpus.valid.ids[:20]) if w not in (vocab.boundary, unk)][:6]
    if vocab.unk is None:  # the synthetic corpus has no <unk>: KenLM's own, -100 in log10
        assert next(lm.full_scores("qwertyuiop", bos=False, eos=False))[0] == pytest.approx(-100.0)
        return
    for i in range(len(line)):
        oov = line[:i] + ["qwertyuiop"] + line[i + 1 :]
        as_unk = line[:i] + [unk] + line[i + 1 :]
        kenlm_oov = list(lm.full_scores(" ".join(oov)))
        kenlm_unk = list(lm.full_scores(" ".join(as_unk)))
        # KenLM flags both as its unknown word, and scores them alike
        assert kenlm_oov[i][2] and kenlm_unk[i][2]
        assert not any(oov for _, _, oov in kenlm_unk[:i] + kenlm_unk[i + 1 :])
        np.testing.assert_allclose([s for s, _, _ in kenlm_oov], [s for s, _, _ in kenlm_unk])
        ours = kn5.token_logprobs(vocab.encode([*as_unk, vocab.boundary])) / LN10
        np.testing.assert_allclose([s for s, _, _ in kenlm_unk], ours, atol=1e-5)


# -- arpa:PATH -----------------------------------------------------------------------------------


def test_arpa_entry_round_trips_kn5(kn5, arpa_file, corpus):
    """lmladder KN5 -> ARPA (10 significant digits) -> ``arpa:`` gives the same scores."""
    model = registry.build(f"arpa:{arpa_file}")
    report = model.fit(corpus.train.ids, corpus.vocab)
    assert isinstance(model, ArpaLM) and model.family == "n-gram"
    assert report.train_tokens == 0 and report.notes["tokens_as_unk"] == 0
    assert model.num_parameters() == kn5.num_parameters()
    ids = corpus.valid.ids[:HELD_OUT]
    np.testing.assert_allclose(model.token_logprobs(ids), kn5.token_logprobs(ids), atol=1e-8,
                               rtol=0)


@pytest.fixture(scope="module")
def tiny_arpa(data, tmp_path_factory):
    model = NGramLM(order=3)
    model.fit(data.train.ids, data.vocab)
    return model, model.to_arpa(tmp_path_factory.mktemp("tiny") / "kn3.arpa")


@pytest.fixture(scope="module")
def arpa_model(tiny_arpa, data):
    model = registry.build(f"arpa:{tiny_arpa[1]}")
    model.fit(data.train.ids, data.vocab)  # trains nothing (contract.fitted wants tokens)
    return model


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__[6:])
def test_arpa_entry_keeps_the_contract(check, arpa_model, data):
    check(arpa_model, data)


def test_arpa_entry_save_load(arpa_model, data, tmp_path):
    contract.check_save_load(arpa_model, data, tmp_path)


def _with_tokens(vocab: Vocab, tokens: list[str]) -> Vocab:
    return Vocab(tokens, boundary=vocab.boundary, unk="<unk>" if "<unk>" in tokens else None)


def test_dataset_words_missing_from_the_file_share_its_unk(data, tmp_path):
    """The file knows ``<unk>`` and part of the vocabulary; the rest of the dataset's tokens are
    ``<unk>`` in histories and share its probability when predicted."""
    vocab = data.vocab
    known = [*vocab.tokens[:30], "<unk>"]  # the boundary is among the first 30
    assert vocab.boundary in known
    small = _with_tokens(vocab, known)
    to_small = np.array([small.index.get(t, small.index["<unk>"]) for t in vocab.tokens])
    file_model = NGramLM(order=3)
    file_model.fit(to_small[data.train.ids], small)
    path = file_model.to_arpa(tmp_path / "small.arpa")
    model = registry.build(f"arpa:{path}")
    model.fit(data.train.ids, vocab)
    shared = len(vocab) - 30  # the tokens the file lacks
    assert model.fit(data.train.ids, vocab).notes["tokens_as_unk"] == shared
    contract.check_sums_to_one(model, data)
    ids = data.test.ids[:300]
    expected = file_model.token_logprobs(to_small[ids]) - np.where(
        to_small[ids] == small.index["<unk>"], np.log(shared), 0.0)
    np.testing.assert_allclose(model.token_logprobs(ids), expected, atol=1e-8)
    np.testing.assert_allclose(LanguageModel.token_logprobs(model, ids), expected, atol=1e-8)


def test_file_words_outside_the_dataset_are_dropped_and_renormalised(tiny_arpa, data):
    """The dataset lacks 5 of the file's words: what they leave is given back through the
    backoff weights, listed probabilities of the remaining words are the file's."""
    full, path = tiny_arpa
    vocab = data.vocab
    kept = [t for i, t in enumerate(vocab.tokens) if i == vocab.boundary_id or i % 8 != 3]
    small = _with_tokens(vocab, kept)
    model = registry.build(f"arpa:{path}")
    model.fit(data.train.ids, small)
    assert model.fit(data.train.ids, small).notes["tokens_as_unk"] == 0
    test_ids = small.encode([t for t in vocab.decode(data.test.ids[:60]) if t in small.index])
    contract.check_sums_to_one(model, SimpleNamespace(vocab=small, test=SimpleNamespace(
        ids=test_ids)))
    unigram = np.exp(model.ngram_.tables_.logp[0])
    ratio = unigram / np.exp(full.tables_.logp[0][[vocab.index[t] for t in kept]])
    np.testing.assert_allclose(ratio, ratio[0])  # unigrams rescaled alike
    assert unigram.sum() == pytest.approx(1.0)


# -- lmladder export-arpa ------------------------------------------------------------------------


def _export(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    interop.add_export_arpa_parser(parser.add_subparsers(dest="command"))
    return interop.export_arpa(parser.parse_args(["export-arpa", *argv]))


def test_export_arpa_from_a_saved_folder_and_from_a_fit(data, tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(data.vocab.detokenize(data.train.ids))
    corpus = load_dataset(f"text:{text}")
    model = NGramLM(order=3, prune=1e-4)
    model.fit(corpus.train.ids, corpus.vocab)
    model.save(tmp_path / "kn3.model")
    assert _export("--model-dir", str(tmp_path / "kn3.model"), "-o", str(tmp_path / "a.arpa")) == 0
    printed = capsys.readouterr().out
    expected = model.to_arpa(tmp_path / "direct.arpa").read_bytes()
    assert (tmp_path / "a.arpa").read_bytes() == expected  # the pruned model, as saved
    sizes = model.tables_.sizes()
    sizes[0] += 1  # the file lists <s> besides the vocabulary
    assert interop.arpa_counts(tmp_path / "a.arpa") == sizes
    assert f"3-grams {sizes[2]:>12,}" in printed and f"{len(expected):,} bytes" in printed
    assert _export("--model", "ngram", "--dataset", f"text:{text}", "--config", "order=3",
                   "prune=1e-4", "-o", str(tmp_path / "b.arpa")) == 0
    assert (tmp_path / "b.arpa").read_bytes() == expected
    with pytest.raises(interop.ExportError, match="add-k interpolates"):
        _export("--model", "laplace2", "--dataset", f"text:{text}", "-o", str(tmp_path / "c"))


@pytest.mark.parametrize("argv,message", [
    (["--model", "kn3"], "--model kn3 needs --dataset"),
    (["--model", "toy-uniform", "--dataset", "synthetic"], "'toy-uniform' is not an n-gram"),
    (["--model", "kn3", "--dataset", "synthetic", "--config", "order"], "expected KEY=VALUE"),
    (["--model-dir", "/no/such/folder"], "/no/such/folder: checkpoint folder does not exist"),
])
def test_export_arpa_errors_are_one_line(argv, message, tmp_path, toy_uniform):
    with pytest.raises(interop.ExportError, match=message) as err:
        _export(*argv, "-o", str(tmp_path / "x.arpa"))
    assert "\n" not in str(err.value)


@pytest.fixture
def toy_uniform(monkeypatch):
    """A registered model of no n-gram kind (tests/toy_models.py), cheap to fit and save."""
    monkeypatch.setitem(registry.MODELS, "toy-uniform",
                        registry.Entry("tests.toy_models:UniformLM"))


def test_export_arpa_refuses_a_folder_of_another_family(data, tmp_path, toy_uniform):
    model = registry.build("toy-uniform")
    model.fit(data.train.ids, data.vocab)
    model.save(tmp_path / "uniform.model")
    with pytest.raises(interop.ExportError, match=r"uniform\.model holds .*UniformLM \(family "
                       r"other\), not an n-gram model"):
        _export("--model-dir", str(tmp_path / "uniform.model"), "-o", str(tmp_path / "x.arpa"))
