import math

import numpy as np
import pytest

from lmladder.api import ContextPolicy, Vocab
from lmladder.corpus import Split
from lmladder.scoring import (
    ScoringError,
    accuracy_from_ranks,
    check_logprobs,
    metrics_from_logprobs,
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


def test_accuracy_from_ranks():
    acc = accuracy_from_ranks(np.array([0, 1, 4, 5, 0, 10]))
    assert acc == {"accuracy_tokens": 6, "top1": 2 / 6, "top5": 4 / 6}


def test_context_policy_validates():
    with pytest.raises(ValueError):
        ContextPolicy(window=0)
    with pytest.raises(ValueError):
        ContextPolicy(window=4, stride=5)
