"""Sentiment protocols: stratified k-fold cross-validation (folds partition the texts, are
stratified and seeded), the add-one unigram under CV equals an independent multinomial Naive
Bayes on the same folds, every result's ``paired`` block, the ``folds`` option's errors, and
the literature anchors that are comparable only to a 10-fold CV result.

The corpus tests read the NLTK zips under ../shared/data/nltk_data (skipped where absent); the
known-answer tests of the fold deal use a toy collection."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from lmladder import registry
from lmladder.reports.anchors import Anchor, AnchorError, load_anchors, match_anchor
from lmladder.tasks import Subject, items_fingerprint
from lmladder.tasks import labelled as labelled_module
from lmladder.tasks.labelled import FOLD_SEED, load_folds, load_labelled
from lmladder.tasks.sentiment import (
    MovieReviews,
    RtPolarity,
    classification_metrics,
    cv_protocol,
)


@pytest.fixture(scope="module")
def nltk_dir(data_dir):
    """The shared data folder where it holds both NLTK sentiment collections."""
    corpora = data_dir / "nltk_data" / "corpora"
    if not all((corpora / f"{c}.zip").is_file() for c in ("sentence_polarity", "movie_reviews")):
        pytest.skip(f"NLTK sentiment corpora not in {corpora}")
    return str(data_dir)


def subject(model: str, data_dir: str) -> Subject:
    return Subject(registry.build(model), None, data_dir=data_dir,
                   fresh=lambda: registry.build(model))


# -- the fold deal, on a toy collection (the docstring's worked example) ------------------------


@pytest.fixture
def toy(monkeypatch):
    """Two classes of 5 one-word texts ("n0".."n4", "p0".."p4") in place of the NLTK reader."""
    texts = [[(f"{c}{i}",) for i in range(5)] for c in "np"]
    monkeypatch.setattr(labelled_module, "_read", lambda c, data_dir: (["neg", "pos"], texts))
    return texts


def test_the_deal_of_the_worked_example(toy):
    folds = load_folds("movie_reviews", k=3)
    assert folds.texts.texts == tuple(toy[0] + toy[1])
    assert folds.texts.labels.tolist() == [0] * 5 + [1] * 5
    per_class = [np.bincount(folds.fold_of[folds.texts.labels == c], minlength=3).tolist()
                 for c in (0, 1)]
    # class 0 dealt to folds 0, 1, 2, 0, 1; class 1, going on, to 2, 0, 1, 2, 0
    assert per_class == [[2, 2, 1], [2, 1, 2]]
    assert np.bincount(folds.fold_of).tolist() == [4, 3, 3]
    # in shuffled order: the permutation is numpy's default_rng(FOLD_SEED) over each class
    rng = np.random.default_rng(FOLD_SEED)
    order = rng.permutation(5)
    assert folds.fold_of[:5][order].tolist() == [0, 1, 2, 0, 1]
    order = rng.permutation(5)
    assert folds.fold_of[5:][order].tolist() == [2, 0, 1, 2, 0]


def test_a_fold_trains_on_the_others_and_holds_out_stratified_validation(toy):
    plain = load_folds("movie_reviews", k=3)
    held = load_folds("movie_reviews", k=3, valid_share=0.25)
    for i in range(3):
        data, where = plain.fold(i)
        assert set(data.test.texts) == {plain.texts.texts[j] for j in where}
        assert set(data.train.texts) == set(plain.texts.texts) - set(data.test.texts)
        assert len(data.valid.texts) == 0
        data_h, where_h = held.fold(i)
        np.testing.assert_array_equal(where, where_h)
        # round(0.25 * n) of each class's n training texts held out, none of them tested
        expected = [round(0.25 * n) for n in np.bincount(data.train.labels, minlength=2)]
        assert np.bincount(data_h.valid.labels, minlength=2).tolist() == expected
        assert set(data_h.valid.texts) | set(data_h.train.texts) == set(data.train.texts)
        assert not set(data_h.valid.texts) & set(data_h.train.texts)
        again, _ = load_folds("movie_reviews", k=3, valid_share=0.25).fold(i)
        assert again.valid.texts == data_h.valid.texts  # seeded
    with pytest.raises(ValueError, match="exceeds the 5 texts"):
        load_folds("movie_reviews", k=6)


# -- the real collections -------------------------------------------------------------------


@pytest.mark.parametrize("name,n", [("sentence_polarity", 10_662), ("movie_reviews", 2_000)])
def test_cv_folds_partition_the_texts_stratified_and_deterministic(nltk_dir, name, n):
    folds = load_folds(name, nltk_dir, k=10)
    assert len(folds.texts.texts) == n and folds.fold_of.shape == (n,)
    tested = np.concatenate([folds.fold(i)[1] for i in range(10)])
    assert sorted(tested.tolist()) == list(range(n))  # every text tested exactly once
    sizes = np.bincount(folds.fold_of, minlength=10)
    assert sizes.max() - sizes.min() <= 1
    for label in (0, 1):
        mine = np.bincount(folds.fold_of[folds.texts.labels == label], minlength=10)
        assert mine.max() - mine.min() <= 1  # stratified
    again = load_folds(name, nltk_dir, k=10)
    np.testing.assert_array_equal(again.fold_of, folds.fold_of)
    assert again.summary() == folds.summary()
    data, where = folds.fold(3)
    assert len(data.train.texts) + len(data.test.texts) == n and len(where) == sizes[3]


def independent_naive_bayes(train, test) -> np.ndarray:
    """Multinomial NB, add-one, over the words seen twice in ``train`` (+ ``<unk>``, ``<eos>``),
    ``<eos>`` ending every text; each test text's credit (1, 0, or 1/2 for a tie)."""
    seen = Counter(w for text, _ in train for w in text)
    kept = {w for w, c in seen.items() if c >= 2}
    size = len(kept | {"<unk>", "<eos>"})
    counts, texts = [Counter(), Counter()], [0, 0]
    for text, y in train:
        counts[y].update(w if w in kept else "<unk>" for w in text)
        counts[y]["<eos>"] += 1
        texts[y] += 1
    totals = [sum(c.values()) for c in counts]
    credit = []
    for text, y in test:
        words = [w if w in kept else "<unk>" for w in text] + ["<eos>"]
        score = [math.log(texts[c] / len(train))
                 + sum(math.log((counts[c][w] + 1) / (totals[c] + size)) for w in words)
                 for c in (0, 1)]
        credit.append(0.5 if score[0] == score[1] else float(score[y] > score[1 - y]))
    return np.array(credit)


def test_cv_unigram_is_multinomial_naive_bayes_pooled_over_every_text(nltk_dir):
    folds = load_folds("sentence_polarity", nltk_dir, k=10)
    texts, labels = folds.texts.texts, folds.texts.labels.tolist()
    expected = np.empty(len(texts))
    for i in range(10):
        train = [(t, y) for t, y, f in zip(texts, labels, folds.fold_of, strict=True) if f != i]
        tested = np.flatnonzero(folds.fold_of == i)
        expected[tested] = independent_naive_bayes(train, [(texts[j], labels[j]) for j in tested])

    result = RtPolarity(folds=10).evaluate(subject("unigram", nltk_dir))
    assert result["protocol"] == "10-fold CV" and result["texts"] == 10_662
    assert result["accuracy"] == pytest.approx(expected.mean(), abs=1e-9)
    assert 0.77 < result["accuracy"] < 0.785  # Wang & Manning's MNB-unigram: 77.94
    per_fold = [expected[folds.fold_of == i].mean() for i in range(10)]
    cv = result["cv"]
    np.testing.assert_allclose([f["accuracy"] for f in cv["per_fold"]], per_fold, atol=1e-9)
    assert cv["accuracy_mean"] == pytest.approx(np.mean(per_fold), abs=1e-12)
    assert cv["accuracy_std"] == pytest.approx(np.std(per_fold, ddof=1), abs=1e-12)
    assert [f["test"] for f in cv["per_fold"]] == np.bincount(folds.fold_of).tolist()
    assert all(f["valid"] == 0 and f["train"] + f["test"] == 10_662 for f in cv["per_fold"])
    lo, hi = result["accuracy_ci95"]
    assert lo < result["accuracy"] < hi and hi - lo < 0.02  # Wilson over all 10,662 texts
    # the paired block: one credit per text, in the collection's order, mean = accuracy
    paired = result["paired"]
    values = paired["metrics"]["accuracy"]["values"]
    assert len(values) == 10_662 and paired["metrics"]["accuracy"]["kind"] == "mean"
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert np.mean(values) == pytest.approx(result["accuracy"], abs=1e-12)
    assert paired["items"] == items_fingerprint(folds.texts.identity())
    assert result["collection"]["split"]["protocol"] == "10-fold CV"


def test_fixed_split_paired_block_and_uniform_known_answers(nltk_dir):
    data = load_labelled("sentence_polarity", nltk_dir)
    result = RtPolarity().evaluate(subject("unigram", nltk_dir))
    assert result["protocol"] == "fixed split"
    assert result["accuracy"] == pytest.approx(817 / 1066)  # 76.64%, as measured before CV
    paired = result["paired"]
    values = paired["metrics"]["accuracy"]["values"]
    assert len(values) == len(data.test.texts) == 1066
    assert np.mean(values) == pytest.approx(result["accuracy"], abs=1e-12)
    assert set(values) <= {0.0, 0.5, 1.0}
    assert paired["items"] == items_fingerprint(data.test.identity())
    # a uniform model ties every text: half credit each, exactly chance on the balanced split
    uniform = RtPolarity().evaluate(subject("uniform", nltk_dir))
    assert uniform["accuracy"] == 0.5 and set(uniform["paired"]["metrics"]["accuracy"]["values"]) \
        == {0.5}
    assert uniform["paired"]["items"] == paired["items"]  # the same texts: the rows pair
    # under CV folds 0 and 1 test 534 texts of one class and 533 of the other, so their
    # training priors lean toward the other class: the uniform model scores 533 of 1,067 there
    # and half credit in the 8 balanced folds, 5,330 of 10,662
    cv = RtPolarity(folds=10).evaluate(subject("uniform", nltk_dir))
    assert cv["accuracy"] == pytest.approx(5330 / 10_662, abs=1e-12)
    assert cv["paired"]["items"] != paired["items"]  # other texts: never paired with the split


def test_classification_metrics_pairs_each_text_with_its_credit():
    from lmladder.tasks.labelled import LabelledSplit

    texts = LabelledSplit((("a",), ("b",), ("c",)), np.array([0, 1, 1]))
    scores = np.array([[0.0, -1.0], [0.0, 0.0], [0.0, -2.0]])  # right, tied, wrong
    m = classification_metrics(scores, texts.labels, texts=texts)
    assert m["paired"]["metrics"]["accuracy"]["values"] == [1.0, 0.5, 0.0]
    assert m["accuracy"] == 0.5 and m["paired"]["items"] == items_fingerprint(texts.identity())
    assert "paired" not in classification_metrics(scores, texts.labels)
    with pytest.raises(ValueError, match="labels differ"):
        classification_metrics(scores, np.array([1, 1, 1]), texts=texts)


# -- the options ----------------------------------------------------------------------------


@pytest.mark.parametrize("folds", [0, 1, -10, 2.5, "10", True, [10]])
def test_folds_must_be_an_integer_of_at_least_two(folds):
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        RtPolarity(folds=folds)


@pytest.mark.parametrize("share", [-0.1, 0.5, 1, True, "0.1"])
def test_valid_share_must_be_a_share_under_one_half(share):
    with pytest.raises(ValueError, match=r"valid_share must be a number in \[0, 0.5\)"):
        MovieReviews(folds=10, valid_share=share)


def test_valid_share_needs_cross_validation_and_names_its_protocol():
    with pytest.raises(ValueError, match="valid_share applies to cross-validation"):
        RtPolarity(valid_share=0.1)
    assert RtPolarity().protocol == "fixed split" and RtPolarity().folds is None
    assert RtPolarity(folds=np.int64(5)).protocol == "5-fold CV"
    assert (MovieReviews(folds=10, valid_share=0.1).protocol
            == cv_protocol(10, 0.1) == "10-fold CV, 0.1 held out for validation")


# -- the literature: comparable only to a 10-fold CV result ----------------------------------


def test_wang_and_mannings_unigram_figure_is_comparable_only_to_10_fold_cv():
    anchors = [a for a in load_anchors() if a.metric == "tasks.rt-polarity.accuracy"]
    (mnb,) = [a for a in anchors if "Naive Bayes" in a.model]
    assert mnb.value == 0.779 and mnb.protocol == RtPolarity(folds=10).protocol
    assert not mnb.comparable  # reports that cannot see a row's protocol show it as a note
    assert mnb.comparable_to("10-fold CV")
    assert not mnb.comparable_to(RtPolarity().protocol) and not mnb.comparable_to(None)
    assert not mnb.comparable_to(cv_protocol(10, 0.1))
    found = match_anchor("unigram", "n-gram", anchors, mnb.metric, higher_is_better=True,
                         protocol="10-fold CV")
    assert found == mnb
    assert match_anchor("unigram", "n-gram", anchors, mnb.metric, higher_is_better=True,
                        protocol="fixed split") is None
    assert match_anchor("unigram", "n-gram", anchors, mnb.metric, higher_is_better=True) is None


def test_the_bigram_figures_are_another_definition():
    bigram = [a for a in load_anchors() if a.metric.startswith("tasks.")
              and "bigram" in a.model and "MNB" in a.model]
    assert sorted((a.metric, a.value) for a in bigram) == [
        ("tasks.movie-reviews.accuracy", 0.8585), ("tasks.rt-polarity.accuracy", 0.790)]
    for a in bigram:
        assert not a.comparable and not a.protocol and "another definition" in a.note
        assert not any(a.comparable_to(p) for p in ("10-fold CV", "fixed split", None))


def test_a_protocol_anchor_cannot_also_claim_comparable(tmp_path):
    body = ('[[anchor]]\ndataset = "*"\nmetric = "tasks.rt-polarity.accuracy"\nvalue = 0.8\n'
            'model = "x"\nfamily = "n-gram"\nsource = "s"\nprotocol = "10-fold CV"\n')
    path = tmp_path / "a.toml"
    path.write_text(body + "comparable = true\n")
    with pytest.raises(AnchorError, match="comparable = true with protocol '10-fold CV'"):
        load_anchors(path)
    path.write_text(body.replace('"10-fold CV"', '" "'))
    with pytest.raises(AnchorError, match="protocol is empty"):
        load_anchors(path)
    path.write_text(body)
    (anchor,) = load_anchors(path)
    assert not anchor.comparable and anchor.comparable_to("10-fold CV")
    with pytest.raises(ValueError, match="comparable must be False"):
        Anchor("*", "tasks.rt-polarity.accuracy", 0.8, "x", "n-gram", "s", protocol="10-fold CV")
