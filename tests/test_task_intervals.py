"""Task scores' 95% intervals: seeded paired bootstraps over items (continuation, translation,
macro-F1), recomputed from sufficient statistics exactly as the corpus scores they resample."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from lmladder import registry
from lmladder.significance import item_statistics, scores_of
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from lmladder.tasks import (
    RESAMPLES,
    Subject,
    bootstrap_counts,
    percentile_interval,
)
from lmladder.tasks.continuation import Continuation, repetition_interval
from lmladder.tasks.continuation import repetition as repetition_share
from lmladder.tasks.sentiment import classification_metrics
from lmladder.tasks.translation import Parallel, translate_and_score
from tests.test_tasks import PAIRS, EchoLM

WORDS = [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module")
def words():
    return synthetic_dataset(SyntheticSource(tokens=(60_000, 4_000, 12_000)))


def noisy_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` 15-word references and hypotheses with about 40% of their words replaced."""
    rng = np.random.default_rng(seed)
    refs = [" ".join(rng.choice(WORDS, 15)) for _ in range(n)]
    hyps = [" ".join(w if rng.random() > 0.4 else str(rng.choice(WORDS)) for w in r.split())
            for r in refs]
    return hyps, refs


def width(interval) -> float:
    return interval[1] - interval[0]


def test_bootstrap_counts_draw_n_items_per_resample_and_are_seeded():
    counts = bootstrap_counts(50, seed=3)
    assert counts.shape == (RESAMPLES, 50) and counts.dtype == np.int64
    assert (counts.sum(axis=1) == 50).all() and (counts >= 0).all()
    np.testing.assert_array_equal(counts, bootstrap_counts(50, seed=3))
    assert not np.array_equal(counts, bootstrap_counts(50, seed=4))
    # each item is drawn once per resample on average
    assert counts.mean() == 1.0 and 0.9 < counts.var() < 1.1
    with pytest.raises(ValueError):
        bootstrap_counts(0, seed=0)


@pytest.mark.parametrize("metric", [sacrebleu.metrics.BLEU(force=True),
                                    sacrebleu.metrics.CHRF()], ids=["bleu", "chrf"])
def test_a_resample_scores_as_sacrebleus_corpus_score_of_the_resampled_segments(metric):
    """The sufficient-statistics shortcut is exact: every resample's score equals sacrebleu's
    corpus score of the segments drawn (each repeated as often as it was drawn)."""
    hyps, refs = noisy_corpus(30)
    counts = bootstrap_counts(30, seed=1, resamples=25)
    direct = []
    for row in counts:
        picked = [i for i, c in enumerate(row) for _ in range(c)]
        direct.append(metric.corpus_score([hyps[i] for i in picked],
                                          [[refs[i] for i in picked]]).score)
    kind = "bleu" if isinstance(metric, sacrebleu.metrics.BLEU) else "chrf"
    stats = item_statistics(kind, hyps, refs)
    assert percentile_interval(scores_of(kind, counts @ stats, 30)) == pytest.approx(
        percentile_interval(direct), rel=1e-12)


def test_text_intervals_contain_the_score_shrink_with_items_and_repeat_with_the_seed():
    from lmladder.tasks.continuation import text_scores

    small_h, small_r = noisy_corpus(40)
    big_h, big_r = noisy_corpus(640)
    small = text_scores(small_h, small_r, bootstrap_counts(40, seed=0))
    big = text_scores(big_h, big_r, bootstrap_counts(640, seed=0))
    for scores in (small, big):
        for name in ("bleu", "chrf"):
            low, high = scores[f"{name}_ci95"]
            assert low < scores[name] < high, (name, scores)
    for name in ("bleu", "chrf"):  # 16x the items: about a quarter of the width
        assert width(big[f"{name}_ci95"]) < width(small[f"{name}_ci95"]) / 2.5, name
    again = text_scores(small_h, small_r, bootstrap_counts(40, seed=0))
    assert again == small
    other = text_scores(small_h, small_r, bootstrap_counts(40, seed=1))
    assert other["bleu"] == small["bleu"] and other["bleu_ci95"] != small["bleu_ci95"]
    assert "bleu_ci95" not in text_scores(small_h, small_r)  # no counts, no interval


def test_repetition_interval_contains_the_share_and_is_a_point_when_all_agree():
    rng = np.random.default_rng(0)
    gens = [rng.integers(0, 8, size=20) for _ in range(60)]
    low, high = repetition_interval(gens, bootstrap_counts(60, seed=0))
    assert low < repetition_share(gens) < high
    same = [np.array([1, 2, 1, 2])] * 10  # every generation repeats half its tokens
    assert repetition_interval(same, bootstrap_counts(10, seed=0)) == (0.5, 0.5)


def test_continuation_records_intervals_with_their_resamples_and_seed(words):
    task = Continuation(prompts=30)
    kn = registry.build("kn3")
    kn.fit(words.train.ids, words.vocab)
    result = task.evaluate(Subject(kn, words), seed=5)
    assert result["bootstrap"]["resamples"] == RESAMPLES
    assert result["bootstrap"]["seed"] == 5 and result["bootstrap"]["over"] == "prompts"
    for name in ("greedy_bleu", "greedy_chrf", "sampled_bleu", "sampled_chrf",
                 "greedy_repetition", "sampled_repetition", "constant_bleu", "constant_chrf"):
        low, high = result[f"{name}_ci95"]
        assert low <= result[name] <= high, (name, result[name], (low, high))
    assert low < high  # the constant output's chrF varies with the prompts drawn
    assert task.evaluate(Subject(kn, words), seed=5) == result
    assert [s.name for s in task.metrics][0] == "greedy_bleu"  # the ranking metric first


def test_the_continuation_oracle_still_scores_100_with_a_point_interval(words):
    echo = EchoLM()
    echo.fit(words.test.ids, words.vocab)
    perfect = Continuation(prompts=30).evaluate(Subject(echo, words))
    assert perfect["greedy_chrf"] == 100.0 and perfect["greedy_bleu"] == pytest.approx(100.0)
    assert perfect["greedy_chrf_ci95"] == (100.0, 100.0)
    assert perfect["greedy_bleu_ci95"] == pytest.approx((100.0, 100.0))


def test_translation_intervals_and_the_oracle_at_100(words):
    parallel = Parallel(train=PAIRS * 2, valid=PAIRS, test=PAIRS * 4)
    echo = EchoLM()
    echo.fit(words.train.ids, words.vocab)
    perfect = translate_and_score(Subject(echo, words), parallel, seed=2)
    assert perfect["bleu"] == pytest.approx(100.0)
    assert perfect["bleu_ci95"] == pytest.approx((100.0, 100.0))
    assert perfect["chrf_ci95"] == pytest.approx((100.0, 100.0))
    assert perfect["bootstrap"]["seed"] == 2 and perfect["bootstrap"]["over"] == "test sentences"
    low, high = perfect["constant_chrf_ci95"]  # one sentence of three right: it varies
    assert low < perfect["constant_chrf"] < high
    assert translate_and_score(Subject(echo, words), parallel, seed=2) == perfect


def test_macro_f1_interval_contains_it_shrinks_and_is_seeded():
    rng = np.random.default_rng(0)

    def metrics(n: int, seed: int = 0) -> dict:
        labels = rng.integers(0, 2, size=n)
        right = rng.random(n) < 0.75  # a 75% classifier
        return classification_metrics(np.eye(2)[np.where(right, labels, 1 - labels)], labels,
                                      seed=seed)

    small, big = metrics(60), metrics(2400)
    for m in (small, big):
        low, high = m["macro_f1_ci95"]
        assert low < m["macro_f1"] < high
        assert m["bootstrap"]["over"] == "test texts"
    assert width(big["macro_f1_ci95"]) < width(small["macro_f1_ci95"]) / 3
    labels = np.array([0, 1, 1, 0, 1])
    scores = np.eye(2)[[0, 1, 0, 0, 1]]
    assert classification_metrics(scores, labels, seed=7) == classification_metrics(
        scores, labels, seed=7)
    perfect = classification_metrics(np.eye(2)[labels], labels)
    assert perfect["macro_f1"] == 1.0 and perfect["macro_f1_ci95"] == (1.0, 1.0)
