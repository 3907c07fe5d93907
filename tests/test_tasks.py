"""Tasks: the registry and the cloze task's known answers (oracle 100%, uniform = chance)."""

from __future__ import annotations

import numpy as np
import pytest

from lmladder import registry, tasks
from lmladder.api import ContextPolicy, LanguageModel
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from lmladder.tasks import wilson_interval
from lmladder.tasks.cloze import Cloze, sentence_logprobs
from tests.toy_models import UniformLM


@pytest.fixture(scope="module")
def words():
    """A synthetic word corpus big enough for a few hundred cloze items."""
    return synthetic_dataset(SyntheticSource(tokens=(60_000, 4_000, 12_000)))


class OracleLM(UniformLM):
    """Knows the test sentences: a line it has seen gets ln 0.9 per token, any other ln 0.1."""

    def fit(self, train, vocab, *, budget=None, valid=None, callback=None):
        report = super().fit(train, vocab)
        lines = np.split(train, np.flatnonzero(train == vocab.boundary_id) + 1)
        self.known_ = {tuple(line.tolist()) for line in lines}
        return report

    def token_logprobs(self, tokens, *, context=ContextPolicy()):
        assert context.reset_at_boundary  # the task scores sentences on their own
        out = np.empty(len(tokens))
        boundary = self._require_fitted().boundary_id
        start = 0
        for end in np.flatnonzero(tokens == boundary) + 1:
            line = tuple(tokens[start:end].tolist())
            out[start:end] = np.log(0.9 if line in self.known_ else 0.1)
            start = end
        return out


def test_the_registry_lists_cloze_with_its_direction_and_chance():
    assert "cloze" in tasks.tasks()
    klass = tasks.task_class("cloze")
    (metric,) = klass.metrics
    assert metric.higher_is_better and metric.chance == 0.2 and klass.description
    with pytest.raises(registry.UnknownNameError, match="Did you mean cloze"):
        tasks.task_class("cloz")


def test_items_are_deterministic_and_frequency_matched(words):
    task = Cloze(items=200, common_words=20, window=10)
    a, b = task.build_items(words, seed=3), task.build_items(words, seed=3)
    assert len(a) == 200
    assert all(x.position == y.position and x.candidates == y.candidates and x.answer == y.answer
               and np.array_equal(x.words, y.words) for x, y in zip(a, b, strict=True))
    c = task.build_items(words, seed=4)
    assert [x.candidates for x in a] != [x.candidates for x in c]
    counts = np.bincount(words.train.ids, minlength=len(words.vocab))
    by_count = sorted(range(len(counts)), key=lambda w: (-counts[w], w))
    common = set(by_count[:20])
    content = [w for w in by_count[20:] if counts[w] >= 5 and w != words.vocab.boundary_id]
    rank = {w: i for i, w in enumerate(content)}
    for item in a:
        right = item.candidates[item.answer]
        assert right == item.words[item.position] and len(set(item.candidates)) == 5
        assert 6 <= len(item.words) <= 40 and not common & set(item.candidates)
        # every distractor is a content word within 2 x window frequency ranks of the answer
        assert all(abs(rank[c] - rank[right]) <= 2 * 10 for c in item.candidates)
    answers = np.bincount([x.answer for x in a], minlength=5)
    assert answers.min() > 20  # the right answer's place is shuffled


def test_oracle_scores_100_and_uniform_scores_chance(words):
    task = Cloze(items=300, common_words=20, window=10)
    oracle = OracleLM()
    oracle.fit(words.test.ids, words.vocab)
    assert task.evaluate(oracle, words)["accuracy"] == 1.0
    uniform = UniformLM()
    uniform.fit(words.train.ids, words.vocab)
    result = task.evaluate(uniform, words)
    assert result["accuracy"] == pytest.approx(0.2, abs=1e-12)  # fair ties: 1/5 per item
    assert result["items"] == 300 and result["accuracy_ci95"][0] < 0.2 < result["accuracy_ci95"][1]


def test_a_kneser_ney_model_beats_chance(words):
    model = registry.build("kn3")
    model.fit(words.train.ids, words.vocab)
    result = Cloze(items=300, common_words=20, window=10).evaluate(model, words)
    assert result["accuracy_ci95"][0] > 0.2, result


def test_sentence_scores_equal_the_step_by_step_sum(words):
    model = registry.build("kn3")
    model.fit(words.train.ids, words.vocab)
    sentences = [words.test.ids[:7], words.test.ids[10:19]]
    got = sentence_logprobs(model, sentences, words.vocab.boundary_id)
    for s, total in zip(sentences, got, strict=True):
        alone = np.append(s, words.vocab.boundary_id)
        reference = LanguageModel.token_logprobs(model, alone)  # the contract's step loop
        assert total == pytest.approx(reference.sum(), rel=1e-12)


def test_cloze_refuses_character_data(words):
    chars = synthetic_dataset(SyntheticSource(tokens=(2000, 200, 200)))
    object.__setattr__(chars, "level", "char")
    with pytest.raises(ValueError, match="word-level"):
        Cloze().build_items(chars)


def test_wilson_interval_known_answer():
    # Wilson (1927); e.g. 8 of 10: [0.490, 0.943]
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
