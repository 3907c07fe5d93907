import math

import numpy as np
import pytest

from lmladder.api import ContextPolicy, LanguageModel, Vocab
from lmladder.corpus import Split
from lmladder.scoring import (
    ScoringError,
    accuracy_from_ranks,
    check_logprobs,
    metrics_from_logprobs,
    score_accuracy,
    score_split,
)
from tests.toy_models import UniformLM

VOCAB = Vocab(["<eos>", "the", "cat", "<unk>"], boundary="<eos>", unk="<unk>")


def test_worked_example_from_the_docstring():
    split = Split("test", np.array([1, 2, 0]), num_chars=8, num_words=3, num_lines=1)
    m = metrics_from_logprobs(np.array([-2.0, -3.0, -1.0]), split)
    assert m.tokens == 3 and m.nats == 6.0 and m.nll == 2.0
    assert m.ppl == pytest.approx(7.389056, rel=1e-6)
    assert m.bits_per_token == pytest.approx(2.0 / math.log(2))
    assert m.bpc == pytest.approx(6.0 / math.log(2) / 8)
    assert m.word_ppl == pytest.approx(m.ppl)


def test_uniform_model_perplexity_is_vocabulary_size():
    ids = np.random.default_rng(0).integers(0, len(VOCAB), 500)
    split = Split("test", ids, num_chars=2000, num_words=500, num_lines=10)
    model = UniformLM()
    model.fit(ids, VOCAB)
    m, lp = score_split(model, split, VOCAB, policy=ContextPolicy())
    assert m.ppl == pytest.approx(len(VOCAB), rel=1e-12)
    assert lp.dtype == np.float64 and lp.shape == (500,)


def test_word_ppl_uses_word_units_for_character_models():
    # 10 characters that make 2 words + 1 line: word ppl = exp(total nats / 3)
    split = Split("test", np.zeros(10, dtype=np.int64), num_chars=10, num_words=3, num_lines=1)
    m = metrics_from_logprobs(np.full(10, -0.5), split)
    assert m.word_ppl == pytest.approx(math.exp(5.0 / 3))
    assert m.bpc == pytest.approx(0.5 / math.log(2))


@pytest.mark.parametrize("bad,what", [(-np.inf, "zero probability"), (np.nan, "nan"),
                                      (0.3, "0.3")])
def test_impossible_logprobs_name_model_token_and_position(bad, what):
    ids = np.array([1, 2, 1, 2, 0])
    lp = np.full(5, -1.0)
    lp[3] = bad
    with pytest.raises(ScoringError) as err:
        check_logprobs(lp, ids, VOCAB, model="kn5", split="test")
    msg = str(err.value)
    assert "kn5" in msg and "'cat'" in msg and "position 3" in msg and what in msg


def test_shape_mismatch_is_an_error():
    with pytest.raises(ScoringError, match="shape"):
        check_logprobs(np.zeros(3), np.zeros(4, dtype=np.int64), VOCAB, model="m", split="s")


def test_accuracy_from_ranks_without_ties():
    g = np.array([0, 1, 4, 5, 0, 10])
    acc = accuracy_from_ranks(np.stack([g, np.ones_like(g)], axis=1))
    assert acc == {"accuracy_tokens": 6, "top1": 2 / 6, "top5": 4 / 6}


def test_accuracy_from_ranks_splits_ties_fairly():
    # (g, e): hand-computed expected hits under random tie-breaking, min(1, max(0, (k - g) / e))
    ranks = np.array([
        [0, 1],   # top-1 alone:                    top1 1,    top5 1
        [0, 4],   # tied with 3 others at the top:  top1 1/4,  top5 1
        [3, 4],   # places 4..7:                    top1 0,    top5 (5-3)/4 = 1/2
        [4, 10],  # places 5..14:                   top1 0,    top5 1/10
        [5, 2],   # places 6..7:                    top1 0,    top5 0
        [0, 8],   # places 1..8:                    top1 1/8,  top5 5/8
    ])
    acc = accuracy_from_ranks(ranks)
    assert acc["accuracy_tokens"] == 6
    assert acc["top1"] == pytest.approx((1 + 1 / 4 + 1 / 8) / 6, abs=1e-15)
    assert acc["top5"] == pytest.approx((1 + 1 + 1 / 2 + 1 / 10 + 5 / 8) / 6, abs=1e-15)


@pytest.mark.parametrize("v", [4, 7, 50])
def test_uniform_model_scores_chance_not_100_percent(v):
    vocab = Vocab(["<eos>", *[f"w{i}" for i in range(v - 1)]], boundary="<eos>")
    ids = np.random.default_rng(v).integers(0, v, 200)
    split = Split("test", ids, num_chars=800, num_words=200, num_lines=10)
    model = UniformLM()
    model.fit(ids, vocab)
    fast = score_accuracy(model, split)
    assert fast["top1"] == pytest.approx(1 / v, abs=1e-14)
    assert fast["top5"] == pytest.approx(min(1.0, 5 / v), abs=1e-14)
    # the contract's reference path (a step loop) gives the same (g, e) = (0, V) everywhere
    ref = LanguageModel.next_token_ranks(model, ids)
    assert (ref == [0, v]).all()
    np.testing.assert_array_equal(ref, model.next_token_ranks(ids))


def test_ranks_must_carry_ties():
    with pytest.raises(ScoringError, match=r"\(N, 2\)"):
        accuracy_from_ranks(np.array([0, 1, 2]))
    with pytest.raises(ScoringError, match="e >= 1"):
        accuracy_from_ranks(np.array([[0, 0]]))


def test_context_policy_validates():
    with pytest.raises(ValueError):
        ContextPolicy(window=0)
    with pytest.raises(ValueError):
        ContextPolicy(window=4, stride=5)


def test_scoring_refuses_a_model_of_another_vocabulary():
    other = Vocab(["<eos>", "a", "b", "c"], boundary="<eos>")
    model = UniformLM()
    model.fit(np.array([1, 2, 0]), other)
    split = Split("test", np.array([1, 2, 0]), num_chars=8, num_words=3, num_lines=1)
    with pytest.raises(ScoringError, match="another vocabulary .*4 tokens"):
        score_split(model, split, VOCAB, name="kn3")


def test_ids_outside_the_vocabulary_are_a_value_error_naming_it():
    model = UniformLM()
    model.fit(np.array([1, 2, 0]), VOCAB)
    for path in (model.token_logprobs, model.next_token_ranks,
                 lambda t: LanguageModel.token_logprobs(model, t)):
        with pytest.raises(ValueError, match=r"token id 10003 is outside this model's vocabulary "
                           r"of 4 \(was it fitted on another dataset\?\)"):
            path(np.array([1, 10003]))
