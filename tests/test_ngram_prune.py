"""Entropy-based pruning (Stolcke 1998; baselines/ngram_prune.py) against brute force.

The reference for Stolcke's D is computed independently of the formula: remove one n-gram, let
the backoff weights renormalise, build the full next-token distributions of its context before
and after, and take p(h) * KL(before || after) over the whole vocabulary.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmladder.api import ConfigError, LanguageModel, Vocab
from lmladder.baselines.ngram import NGramLM
from lmladder.baselines.ngram_prune import (
    entropy_increase,
    history_logprobs,
    prune,
    recompute_backoffs,
)
from lmladder.registry import load_model
from tests import contract

TEXT = "a b c </s> a b </s> b c a </s> c c b a </s> a a b c </s> b </s>"


def _bigram() -> NGramLM:
    vocab = Vocab(["</s>", "a", "b", "c"], boundary="</s>")
    model = NGramLM(order=2, smoothing="kneser-ney")
    model.fit(vocab.encode(TEXT.split()), vocab)
    return model


def _brute_force_d(model: NGramLM, row: int) -> float:
    """p(h) KL(p(. | h) || p'(. | h)) for removing bigram ``row`` (p(h): the unigram of h)."""
    t = model.tables_
    h = t.ngram_tokens(2)[row, 0]
    keep = np.ones(len(t.keys[1]), dtype=bool)
    keep[row] = False
    without = recompute_backoffs(t.select([np.ones(4, dtype=bool), keep]))
    before = np.exp(t.distributions(np.array([[h]]))[0])
    after = np.exp(without.distributions(np.array([[h]]))[0])
    assert after.sum() == pytest.approx(1.0) and before.sum() == pytest.approx(1.0)
    return float(np.exp(t.logp[0][h]) * np.sum(before * np.log(before / after)))


def test_stolcke_d_equals_brute_force_kl_and_decides_which_bigrams_go():
    model = _bigram()
    t = model.tables_
    d = entropy_increase(t, 2)
    reference = [_brute_force_d(model, r) for r in range(len(t.keys[1]))]
    np.testing.assert_allclose(d, reference, rtol=1e-9, atol=1e-15)
    # >= 0; exactly 0 in contexts that list every word (nothing is left to back off to, so the
    # removed word's backed-off probability is its old one)
    assert (d >= 0).all() and (d > 0).sum() >= 8
    # a threshold between two D values removes exactly the n-grams below it
    order = np.argsort(d)
    threshold = float(np.expm1((d[order[6]] + d[order[7]]) / 2))
    pruned = prune(t, threshold)
    kept = {tuple(x) for x in pruned.ngram_tokens(2).tolist()}
    expected = {tuple(x) for x in t.ngram_tokens(2)[order[7:]].tolist()}
    assert kept == expected and len(kept) == len(d) - 7


def test_history_probability_uses_end_of_sentence_for_the_start():
    """p(<s> a) = p(</s>) p(a | <s>): the boundary as a history counts with its unigram (that of
    </s>), as SRILM's computeContextProb does."""
    model = NGramLM(order=3, smoothing="kneser-ney")
    vocab = Vocab(["</s>", "a", "b", "c"], boundary="</s>")
    model.fit(vocab.encode(TEXT.split()), vocab)
    t = model.tables_
    hist = history_logprobs(t)
    row = t.rows_of(np.array([[0, 1]]))[0]  # "<s> a"
    expected = t.logp[0][0] + model.token_logprobs(np.array([1]))[0]
    assert hist[1][row] == pytest.approx(expected)


def _fit(data, prune_at: float, order: int = 4) -> NGramLM:
    model = NGramLM(order=order, prune=prune_at)
    model.fit(data.train.ids, data.vocab)
    return model


def test_threshold_zero_is_the_unpruned_model(data):
    a, b = _fit(data, 0.0), NGramLM(order=4)
    b.fit(data.train.ids, data.vocab)
    np.testing.assert_array_equal(a.token_logprobs(data.test.ids), b.token_logprobs(data.test.ids))
    assert a.tables_.sizes() == b.tables_.sizes() and a.unpruned_sizes_ is None


def test_higher_thresholds_keep_fewer_ngrams_and_distributions_sum_to_one(data):
    sizes = []
    for threshold in (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2):
        model = _fit(data, threshold)
        contract.check_sums_to_one(model, data, atol=1e-10)
        contract.check_fast_equals_reference(model, data, atol=1e-10)
        sizes.append(model.tables_.sizes())
        if threshold:
            assert model.unpruned_sizes_ == sizes[0]
    sizes = np.array(sizes)
    assert (np.diff(sizes, axis=0) <= 0).all()  # monotone in every order
    assert sizes[:, 0].tolist() == [len(data.vocab)] * len(sizes)  # unigrams stay
    assert sizes[-1, 1:].sum() < sizes[2, 1:].sum() < sizes[0, 1:].sum()


def test_pruned_model_saves_exports_and_shows_both_counts(data, tmp_path):
    model = _fit(data, 1e-4)
    contract.check_save_load(model, data, tmp_path)
    assert load_model(tmp_path / "ckpt").unpruned_sizes_ == model.unpruned_sizes_
    table = model.inspect()[0]
    assert table["columns"][:3] == ["order", "n-grams before pruning", "n-grams"]
    assert [r[1:3] for r in table["rows"]] == [
        [a, b] for a, b in zip(model.unpruned_sizes_, model.tables_.sizes(), strict=True)]
    back = NGramLM.from_arpa(model.to_arpa(tmp_path / "pruned.arpa"), data.vocab)
    assert back.tables_.sizes() == model.tables_.sizes()
    ids = data.test.ids
    np.testing.assert_allclose(back.token_logprobs(ids), model.token_logprobs(ids), atol=1e-8)
    np.testing.assert_allclose(LanguageModel.token_logprobs(back, ids[:100]),
                               model.token_logprobs(ids[:100]), atol=1e-8)


@pytest.mark.parametrize("config,message", [
    ({"prune": -1e-7}, "prune must be >= 0"),
    ({"prune": 1e-7, "smoothing": "mle"}, "prune needs a smoothing with backoff mass"),
    ({"prune": 1e-7, "smoothing": "add-k"}, "not 'add-k'"),
])
def test_prune_config_errors(config, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        NGramLM(**config)
