"""Tasks: the registry and the cloze task's known answers (oracle 100%, uniform = chance)."""

from __future__ import annotations

import numpy as np
import pytest

from lmladder import registry, tasks
from lmladder.api import ContextPolicy, LanguageModel
from lmladder.data import build_word_vocab
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from lmladder.tasks import Subject, wilson_interval
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
        # every distractor is a content word of another training count than the answer's, with
        # fewer than `window` content words strictly between the two counts (tests/test_cloze.py)
        for c in item.candidates:
            lo, hi = sorted((counts[c], counts[right]))
            assert c in rank and (c == right or lo < hi)
            assert sum(lo < counts[w] < hi for w in content) < 10
    answers = np.bincount([x.answer for x in a], minlength=5)
    assert answers.min() > 20  # the right answer's place is shuffled


def test_oracle_scores_100_and_uniform_scores_chance(words):
    task = Cloze(items=300, common_words=20, window=10)
    oracle = OracleLM()
    oracle.fit(words.test.ids, words.vocab)
    assert task.evaluate(Subject(oracle, words))["accuracy"] == 1.0
    uniform = UniformLM()
    uniform.fit(words.train.ids, words.vocab)
    result = task.evaluate(Subject(uniform, words))
    assert result["accuracy"] == pytest.approx(0.2, abs=1e-12)  # fair ties: 1/5 per item
    assert result["items"] == 300 and result["accuracy_ci95"][0] < 0.2 < result["accuracy_ci95"][1]


def test_a_kneser_ney_model_beats_chance(words):
    model = registry.build("kn3")
    model.fit(words.train.ids, words.vocab)
    result = Cloze(items=300, common_words=20, window=10).evaluate(Subject(model, words))
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


# -- sentiment: one language model per class -------------------------------------------------


def test_unigram_class_models_are_multinomial_naive_bayes():
    """class_scores with add-one unigrams equals Naive Bayes computed by hand."""
    from lmladder.baselines.ngram import NGramLM
    from lmladder.tasks.sentiment import class_scores

    train = {0: [["bad", "film"], ["bad", "bad", "plot"]], 1: [["good", "film"]]}
    vocab = build_word_vocab([t for texts in train.values() for t in texts])
    priors = np.log([2 / 3, 1 / 3])
    models = []
    for label in (0, 1):
        m = NGramLM(order=1, smoothing="add-k", k=1.0)
        m.fit(vocab.encode([w for t in train[label] for w in (*t, "<eos>")]), vocab)
        models.append(m)
    tests = [("bad", "film"), ("good", "plot", "film")]
    got = class_scores(models, priors, tests, vocab)
    for i, text in enumerate(tests):
        for label in (0, 1):
            words = [w for t in train[label] for w in (*t, "<eos>")]
            n, v = len(words), len(vocab)
            expected = priors[label] + sum(
                np.log((words.count(w) + 1) / (n + v)) for w in (*text, "<eos>"))
            assert got[i, label] == pytest.approx(expected, rel=1e-12)
    assert got[0].argmax() == 0 and got[1].argmax() == 1


def test_classification_metrics_known_answers():
    from lmladder.tasks.sentiment import classification_metrics

    labels = np.array([0, 0, 1, 1, 1, 0])
    tied = classification_metrics(np.zeros((6, 2)), labels)  # a uniform model: chance
    assert tied["accuracy"] == 0.5 and tied["macro_f1"] == pytest.approx(0.5)
    perfect = classification_metrics(np.eye(2)[labels], labels)
    assert perfect["accuracy"] == 1.0 and perfect["macro_f1"] == 1.0
    # 4 of 6 right: class 0 has tp 2, fp 1, fn 1; class 1 the same -> F1 2/3 each
    scores = np.eye(2)[[0, 0, 1, 1, 0, 1]]
    m = classification_metrics(scores, labels)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["macro_f1"] == pytest.approx(2 / 3)


def test_frequency_alone_scores_chance_on_ptb_cloze(data_dir):
    """A unigram model only knows frequencies; the distractors are frequency-matched with the
    answer at a random place among them, so it must score chance (20%), not below or above."""
    from lmladder.tasks import run_task

    result = run_task("cloze", "unigram", dataset="ptb", data_dir=data_dir)
    low, high = result["accuracy_ci95"]
    assert result["items"] == 1000 and low < 0.2 < high
    assert run_task("cloze", "kn3", dataset="ptb", data_dir=data_dir)["accuracy"] > 0.6


def test_rt_polarity_naive_bayes_near_the_literature(data_dir):
    """rt-polarity, fixed stratified split: Pang & Lee's Naive Bayes is about 77-78%."""
    from lmladder.tasks.labelled import load_labelled

    split = load_labelled("sentence_polarity", data_dir)
    assert [len(getattr(split, s).texts) for s in ("train", "valid", "test")] == [8530, 1066, 1066]
    assert np.bincount(split.test.labels).tolist() == [533, 533]
    assert load_labelled("sentence_polarity", data_dir).summary() == split.summary()
    task = tasks.task_class("rt-polarity")()
    result = task.evaluate(Subject(registry.build("unigram"), tiny_words(), data_dir=str(data_dir)))
    assert 0.74 < result["accuracy"] < 0.80, result
    assert result["collection"]["sizes"]["test"] == 1066


def test_a_missing_nltk_corpus_says_what_to_put_where(tmp_path, monkeypatch):
    import nltk

    from lmladder.data import DataNotFoundError
    from lmladder.tasks.labelled import load_labelled

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(nltk, "download", lambda *a, **k: False)  # as offline
    with pytest.raises(DataNotFoundError) as err:
        load_labelled("movie_reviews", tmp_path)
    message = str(err.value)
    assert "movie_reviews.zip" in message and str(tmp_path / "nltk_data") in message


def tiny_words():
    return synthetic_dataset(SyntheticSource(tokens=(2000, 200, 200)))


# -- continuation -----------------------------------------------------------------------------


class EchoLM(UniformLM):
    """Generates what the test stream really says after the prompt: the continuation oracle."""

    def fit(self, train, vocab, *, budget=None, valid=None, callback=None):
        self.stream_ = np.asarray(train)
        return super().fit(train, vocab)

    def generate(self, prompt, max_new_tokens, *, temperature=1.0, top_k=None, seed=0):
        n = len(prompt)
        for i in range(len(self.stream_) - n):
            if np.array_equal(self.stream_[i : i + n], prompt):
                return self.stream_[i + n : i + n + max_new_tokens].copy()
        raise AssertionError("prompt not in the stream")


def test_continuation_oracle_scores_100_and_a_model_scores_less(words):
    from lmladder.tasks.continuation import Continuation

    task = Continuation(prompts=30)
    echo = EchoLM()
    echo.fit(words.test.ids, words.vocab)
    perfect = task.evaluate(Subject(echo, words))
    assert perfect["greedy_bleu"] == pytest.approx(100.0) and perfect["greedy_chrf"] == 100.0
    assert perfect["prompts"] == 30 and len(perfect["samples"]) == 3
    assert perfect["samples"][0]["greedy"] == perfect["samples"][0]["truth"]
    kn = registry.build("kn3")
    kn.fit(words.train.ids, words.vocab)
    again = [task.evaluate(Subject(kn, words), seed=5) for _ in range(2)]
    assert again[0] == again[1]  # seeded: the same generations and scores
    assert 0 <= again[0]["sampled_bleu"] < 100 and 0 < again[0]["sampled_distinct_2"] <= 1
    assert "nrefs:1" in again[0]["greedy_bleu_signature"]


def test_bleu_through_sacrebleu_equals_a_hand_checked_case():
    from lmladder.tasks.continuation import distinct, repetition, text_scores

    # 7 tokens, one wrong at the end: precisions 6/7, 5/6, 4/5, 3/4, brevity penalty 1
    scores = text_scores(["a b c d e f g"], ["a b c d e f h"])
    assert scores["bleu"] == pytest.approx(100 * (3 / 7) ** 0.25, rel=1e-9)
    gens = [np.array([1, 2, 1, 2]), np.array([3, 3, 3, 4])]
    assert distinct(gens, 1) == 4 / 8 and distinct(gens, 2) == pytest.approx(4 / 6)
    assert repetition(gens) == 4 / 8


def test_the_constant_output_is_the_most_frequent_line_and_a_row_of_its_own(words):
    from lmladder.tasks.continuation import Continuation, constant_output

    # after a boundary 5 and 7 come twice each (the smaller wins), then 6 after "0 5", a boundary
    # after "5 6", 7 after "6 0" (twice), a boundary after "0 7", 5 (tied with 8) after "7 0"
    stream = np.array([5, 6, 0, 7, 0, 5, 6, 0, 7, 0, 8, 0])
    np.testing.assert_array_equal(constant_output(stream, 0, 8), [5, 6, 0, 7, 0, 5, 6, 0])
    # no boundary in the stream: it is read as one line; "3 4" is followed by nothing: restart
    np.testing.assert_array_equal(constant_output(np.array([3, 4]), 0, 5), [3, 4, 3, 4, 3])

    class ConstantLM(UniformLM):
        """Gives the constant output greedily, whatever the prompt."""

        def generate(self, prompt, max_new_tokens, *, temperature=1.0, top_k=None, seed=0):
            return constant_output(self.train_, self.vocab_.boundary_id, max_new_tokens)

    model = ConstantLM()
    model.fit(words.train.ids, words.vocab)
    model.train_ = words.train.ids
    result = Continuation(prompts=30).evaluate(Subject(model, words))
    assert result["constant_bleu"] == pytest.approx(result["greedy_bleu"])
    assert result["constant_chrf"] == pytest.approx(result["greedy_chrf"])
    assert result["constant_output"] == result["samples"][0]["greedy"]


def test_continuation_is_not_applicable_to_open_vocabulary_models(words):
    from lmladder.tasks import NotApplicable
    from lmladder.tasks.continuation import Continuation

    model = UniformLM()
    model.fit(words.train.ids, words.vocab)
    model.closed_vocabulary = False
    with pytest.raises(NotApplicable):
        Continuation(prompts=2).evaluate(Subject(model, words))


# -- translation ------------------------------------------------------------------------------

PAIRS = [("A dog runs.", "Ein Hund rennt."), ("Two men sit on a bench.", "Zwei Männer sitzen."),
         ("A girl reads a book.", "Ein Mädchen liest ein Buch.")]


def test_translation_oracle_scores_100_and_uniform_near_zero(words):
    from lmladder.tasks.translation import Parallel, translate_and_score

    parallel = Parallel(train=PAIRS * 2, valid=PAIRS, test=PAIRS)
    echo = EchoLM()
    echo.fit(words.train.ids, words.vocab)
    perfect = translate_and_score(Subject(echo, words), parallel)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    assert perfect["samples"][0]["output"] == "Ein Hund rennt ."  # 13a tokens, raw reference
    uniform = UniformLM()
    uniform.fit(words.train.ids, words.vocab)
    guessed = translate_and_score(Subject(uniform, words), parallel)
    assert guessed["bleu"] < 10 and guessed["sentences"] == 3
    # the constant baseline: what the target counts write with no source, as long as the median
    # target (4 tokens): "Ein" starts most targets, "Hund" and "Mädchen" tie after it (the
    # smaller id wins), then "rennt ."
    assert guessed["constant_output"] == "Ein Hund rennt ."
    assert 0 < guessed["constant_bleu"] < perfect["bleu"] == pytest.approx(100.0)
    assert "tok:13a" in guessed["bleu_signature"]


def test_translation_finds_multi30k(data_dir):
    from lmladder.tasks.translation import load_multi30k

    data = load_multi30k(data_dir)
    assert (len(data.train), len(data.valid), len(data.test)) == (29000, 1014, 1000)
    assert data.test[0][0].startswith("A man in an orange hat")


def test_the_task_command(capsys):
    import json

    from lmladder.cli import main

    assert main(["task", "cloze", "kn3", "--dataset", "synthetic", "--seed", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("accuracy") and "(chance 0.2)" in line
    assert main(["task", "cloze", "kn3", "--dataset", "synthetic", "--seed", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "ok" and result["seed"] == 2 and 0.2 < result["accuracy"] <= 1
    assert f"{result['accuracy']:.4g}" in line  # the same run, the same number
    assert main(["task", "no-such-task", "kn3"]) == 2
    assert "Valid: cloze" in capsys.readouterr().err
