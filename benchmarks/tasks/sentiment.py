"""Sentiment classification with generative language models: one model per class.

For each class c a fresh model of the cell's entry and config is trained, under the cell's
budget, on the training texts of c (one text per line, ``<eos>`` after each, over one vocabulary
built from all training texts: words seen twice or more, the rest ``<unk>``).  A test text x gets
the class maximising ln p(x | c) + ln p(c): the text scored on its own, after one boundary token
and up to its ``<eos>``, plus the class's share of the training texts.  Ties are counted fairly
(an answer tied with e-1 other classes counts 1/e, also in the F1 counts).

With the add-one unigram model this *is* multinomial Naive Bayes with Laplace smoothing
(McCallum & Nigam 1998), ``<eos>`` counted as one more word: the baseline Pang & Lee's
rt-polarity results are quoted against (Naive Bayes about 77-78% accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmladder.api import LanguageModel, Vocab
from lmladder.corpus import EOS
from lmladder.data import build_word_vocab
from lmladder.tasks import (
    MetricSpec,
    Subject,
    Task,
    bootstrap_counts,
    bootstrap_note,
    percentile_interval,
    wilson_interval,
)
from lmladder.tasks.cloze import sentence_logprobs
from lmladder.tasks.labelled import LabelledData, LabelledSplit, load_labelled


class Sentiment(Task):
    """Generative classification of a labelled NLTK collection (set by subclasses)."""

    uses_fitted_model = False

    collection: str
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.5),
               MetricSpec("macro_f1", higher_is_better=True, chance=0.5))

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        data = load_labelled(self.collection, subject.data_dir)
        vocab = build_word_vocab([list(t) for t in data.train.texts], min_count=2)
        models = []
        for label in range(len(data.classes)):
            model = subject.new_model()
            model.fit(_stream(data.train, label, vocab), vocab, budget=subject.budget,
                      valid=_stream(data.valid, label, vocab))
            models.append(model)
        scores = class_scores(models, class_priors(data), data.test.texts, vocab)
        return {**classification_metrics(scores, data.test.labels, seed=seed),
                "collection": data.summary(),
                "vocab_size": len(vocab), "seed": seed}


class RtPolarity(Sentiment):
    """rt-polarity sentence sentiment, one LM per class (unigram = Naive Bayes)."""

    name = "rt-polarity"
    description = ("positive or negative movie snippet (rt-polarity), one LM per class; "
                   "the add-one unigram is multinomial Naive Bayes")
    collection = "sentence_polarity"


class MovieReviews(Sentiment):
    """movie_reviews document sentiment, one LM per class."""

    name = "movie-reviews"
    description = "positive or negative full movie review (Pang & Lee 2004), one LM per class"
    collection = "movie_reviews"


def _stream(split: LabelledSplit, label: int, vocab: Vocab) -> np.ndarray:
    texts = [t for t, y in zip(split.texts, split.labels, strict=True) if y == label]
    return vocab.encode([w for t in texts for w in (*t, EOS)])


def class_priors(data: LabelledData) -> np.ndarray:
    """ln p(c): the classes' shares of the training texts."""
    counts = np.bincount(data.train.labels, minlength=len(data.classes))
    return np.log(counts / counts.sum())


def class_scores(models: list[LanguageModel], priors: np.ndarray, texts, vocab: Vocab
                 ) -> np.ndarray:
    """ln p(x | c) + ln p(c) for every text x (rows) and class c (columns), float64."""
    sentences = [vocab.encode(list(t)) for t in texts]
    return np.stack([sentence_logprobs(m, sentences, vocab.boundary_id) for m in models],
                    axis=1) + priors


def classification_metrics(scores: np.ndarray, labels: np.ndarray, *, seed: int = 0
                           ) -> dict[str, Any]:
    """Accuracy (with its 95% Wilson interval) and macro-F1 (with a 95% percentile bootstrap
    interval over the texts, resampled with ``seed``) of argmax predictions, ties split evenly
    between the tied classes."""
    top = scores == scores.max(axis=1, keepdims=True)
    predicted = top / top.sum(axis=1, keepdims=True)  # (n, classes) fractional votes
    truth = np.eye(scores.shape[1])[labels]
    hits = float((predicted * truth).sum())
    tp = predicted * truth  # (n, classes): each text's share of every class's tp, fp, fn
    fp, fn = predicted - tp, truth - tp
    counts = bootstrap_counts(len(labels), seed)
    resampled = macro_f1(counts @ tp, counts @ fp, counts @ fn)  # (resamples,)
    return {"accuracy": hits / len(labels), "accuracy_ci95": wilson_interval(hits, len(labels)),
            "macro_f1": float(macro_f1(tp.sum(0), fp.sum(0), fn.sum(0))),
            "macro_f1_ci95": percentile_interval(resampled),
            "bootstrap": bootstrap_note(seed, "test texts"), "texts": int(len(labels))}


def macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """The mean over classes (last axis) of F1 = 2 tp / (2 tp + fp + fn), over the classes
    that were predicted or present (a small resample may miss one; it is left out of the mean,
    not counted 0); 0 where there is none."""
    denominator = 2 * tp + fp + fn
    seen = denominator > 0
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=np.float64),
                   where=seen)
    n = seen.sum(axis=-1)
    return np.divide(f1.sum(axis=-1), n, out=np.zeros(np.shape(n)), where=n > 0)
