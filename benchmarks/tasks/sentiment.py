"""Sentiment classification with generative language models: one model per class.

For each class c a fresh model of the cell's entry and config is trained, under the cell's
budget, on the training texts of c (one text per line, ``<eos>`` after each, over one vocabulary
built from all training texts: words seen twice or more, the rest ``<unk>``).  A test text x gets
the class maximising ln p(x | c) + ln p(c): the text scored on its own, after one boundary token
and up to its ``<eos>``, plus the class's share of the training texts.  Ties are counted fairly
(an answer tied with e-1 other classes counts 1/e, also in the F1 counts).

With the add-one unigram model this *is* multinomial Naive Bayes with Laplace smoothing
(McCallum & Nigam 1998), ``<eos>`` counted as one more word; with a bigram or trigram model it is
Peng & Schuurmans's (2003) chain-augmented Naive Bayes, a class-conditional n-gram LM.  Wang &
Manning's (2012) "MNB-bigram" is something else: Naive Bayes over *binarized* unigram and bigram
indicator features (a bag of features, not a normalised sequence model), so it cannot run
through the LM contract and is shown only as a literature figure of another definition.

Protocols (:mod:`lmladder.tasks.labelled` has the details and a worked example):

* ``folds=None`` (the default): the fixed stratified 80/10/10 split, the models validated on its
  10%; ``protocol`` is ``"fixed split"``.
* ``folds=k``: stratified k-fold cross-validation with a fixed seed, the literature's protocol
  (Wang & Manning 2012 report 10-fold CV on both collections, Pang & Lee 2004 on movie-reviews).
  Each fold trains one model per class on the other k-1 folds, with its own vocabulary and class
  priors, and classifies its test fold.  ``valid_share`` (default 0, as the literature) holds out
  that share of each class's training texts as the fold's validation texts (for models that
  validate or stop early); with 0 the models get no validation texts.  Accuracy and macro-F1 are
  pooled: every text of the collection is classified once, by the models of the fold it is a
  test text of, and scored once; ``cv`` records each fold's accuracy, sizes, vocabulary and
  test-text fingerprint, and the mean and sample standard deviation (ddof=1) of the fold
  accuracies.  ``protocol`` is ``"10-fold CV"`` (``"<k>-fold CV"``), plus
  ``", <share> held out for validation"`` where ``valid_share > 0``: a literature anchor with
  ``protocol = "10-fold CV"`` is comparable only to a result recording exactly that
  (:mod:`lmladder.reports.anchors`).

Every result has accuracy with its 95% Wilson interval over the scored texts (the test split, or
every text under CV), macro-F1 with a 95% paired-bootstrap interval, and a ``paired`` block
(:mod:`lmladder.significance`): each scored text's credit (1, 0 or 1/e) in order, and the
fingerprint of the texts and labels, so any two rows scored on the same texts (same protocol's
texts: the fixed split's test texts, or the whole collection under CV) can be tested against
each other with the paired bootstrap.

Measured on 2 shared CPU cores (seed 0; accuracy with its 95% Wilson interval over the scored
texts: 1,066 / 200 test texts on the fixed split, all 10,662 / 2,000 texts under CV; CV with
10 folds and no validation texts, fold accuracies' mean ± standard deviation beside it; each
run 1-14 s):

==============  =================  ======================  ======================  ===========
collection      model              fixed split (test)      10-fold CV (all texts)  CV folds
==============  =================  ======================  ======================  ===========
rt-polarity     add-one unigram    76.64% [74.01, 79.08]   77.83% [77.03, 78.61]   77.8 ± 1.5
rt-polarity     add-one bigram     73.83% [71.11, 76.38]   74.78% [73.95, 75.59]   74.8 ± 1.8
rt-polarity     KN3 (modified KN)  72.42% [69.66, 75.02]   73.79% [72.95, 74.62]   73.8 ± 1.2
movie-reviews   add-one unigram    80.00% [73.91, 84.95]   81.20% [79.43, 82.85]   81.2 ± 2.5
movie-reviews   add-one bigram     76.00% [69.63, 81.39]   78.70% [76.85, 80.44]   78.7 ± 4.8
movie-reviews   KN3 (modified KN)  81.00% [75.00, 85.83]   84.10% [82.43, 85.64]   84.1 ± 2.2
==============  =================  ======================  ======================  ===========

Paired bootstrap (:func:`lmladder.significance.paired_p_value`, 1,000 resamples): under CV every
pair of these rows differs at p < 0.05 (unigram vs either bigram model on rt-polarity, KN3 vs
unigram on movie-reviews: p = 0.001, the least 1,000 resamples can give); on the fixed split's 200
movie-reviews texts none does (KN3 vs unigram p = 0.67), on its 1,066 rt-polarity texts unigram vs
add-one bigram p = 0.047, unigram vs KN3 p = 0.007, add-one bigram vs KN3 p = 0.26.  The uniform
model scores exactly 50% on the fixed split (balanced priors) and 5,330/10,662 = 49.99% under CV
(each fold tilts the prior by one text, toward the class its test fold holds one fewer of).  Holding
out ``valid_share=0.1`` costs the unigram 0.4 points under CV (77.42%, training on 81% of the texts
instead of 90%).

Wang & Manning report MNB 77.9 (unigrams) and 79.0 (uni+bigrams) on rt-polarity, 83.45 and
85.85 on movie-reviews (their RT-2k), all 10-fold CV with binarized features: the add-one
unigram's 77.83% under CV is 0.11 points below their unigram MNB (77.94 in their released
results table).  Class-conditional bigram LMs do not reproduce their bigram gain on snippets:
on rt-polarity they are *worse* than the unigram (sparse bigram counts in 4,800 snippets per
class), while on full reviews KN3 gains 2.9 points over the unigram under CV (84.10%, near their
MNB-bigram 85.85).
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
    items_fingerprint,
    paired_block,
    paired_entry,
    percentile_interval,
    wilson_interval,
)
from lmladder.tasks.cloze import sentence_logprobs
from lmladder.tasks.labelled import (
    FOLD_SEED,
    LabelledData,
    LabelledSplit,
    check_folds,
    check_valid_share,
    load_folds,
    load_labelled,
    texts_sha256,
)

FIXED_SPLIT = "fixed split"


def cv_protocol(folds: int, valid_share: float = 0.0) -> str:
    """The ``protocol`` a cross-validated result records: ``"10-fold CV"``, with
    ``", 0.1 held out for validation"`` where the folds hold out validation texts."""
    held = f", {valid_share:g} held out for validation" if valid_share > 0 else ""
    return f"{folds}-fold CV{held}"


class Sentiment(Task):
    """Generative classification of a labelled NLTK collection (set by subclasses).

    Parameters
    ----------
    folds:
        None (default): the fixed stratified 80/10/10 split.  An integer k >= 2: stratified
        k-fold cross-validation (seed :data:`~lmladder.tasks.labelled.FOLD_SEED`), accuracy
        pooled over every text of the collection.
    valid_share:
        Under cross-validation only: the share of each class's training texts a fold holds out
        for the models' validation, in [0, 0.5); default 0 (the literature's protocol, no
        validation texts).  The fixed split always validates on its own 10%.
    """

    uses_fitted_model = False

    collection: str
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.5),
               MetricSpec("macro_f1", higher_is_better=True, chance=0.5))

    def __init__(self, *, folds: int | None = None, valid_share: float | None = None):
        self.folds = None if folds is None else check_folds(folds)
        if valid_share is not None and self.folds is None:
            raise ValueError(f"{self.name}: valid_share applies to cross-validation "
                             "(folds=k); the fixed split validates on its own 10%")
        self.valid_share = 0.0 if valid_share is None else check_valid_share(valid_share)

    @property
    def protocol(self) -> str:
        return FIXED_SPLIT if self.folds is None else cv_protocol(self.folds, self.valid_share)

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        if self.folds is not None:
            return self._cross_validated(subject, seed)
        data = load_labelled(self.collection, subject.data_dir)
        scores, vocab_size = classify(subject, data)
        return {**classification_metrics(scores, data.test.labels, seed=seed, texts=data.test),
                "protocol": self.protocol, "collection": data.summary(),
                "vocab_size": vocab_size, "seed": seed}

    def _cross_validated(self, subject: Subject, seed: int) -> dict[str, Any]:
        cv = load_folds(self.collection, subject.data_dir, k=self.folds,
                        valid_share=self.valid_share)
        scores = np.empty((len(cv.texts.texts), len(cv.classes)))
        per_fold = []
        for i in range(cv.k):
            data, where = cv.fold(i)
            scores[where], vocab_size = classify(subject, data)
            credit = text_credit(scores[where], data.test.labels)
            per_fold.append({"accuracy": float(credit.mean()), **data.sizes(),
                             "vocab_size": vocab_size, "test_sha256": texts_sha256(data.test)})
        accuracies = np.array([f["accuracy"] for f in per_fold])
        return {**classification_metrics(scores, cv.texts.labels, seed=seed, texts=cv.texts),
                "protocol": self.protocol,
                "cv": {"folds": cv.k, "seed": FOLD_SEED, "stratified": True,
                       "valid_share": cv.valid_share,
                       "accuracy_mean": float(accuracies.mean()),
                       "accuracy_std": float(accuracies.std(ddof=1)),
                       "per_fold": per_fold},
                "collection": cv.summary(), "seed": seed}


class RtPolarity(Sentiment):
    """rt-polarity sentence sentiment, one LM per class (unigram = Naive Bayes)."""

    name = "rt-polarity"
    description = ("positive or negative movie snippet (rt-polarity), one LM per class; "
                   "the add-one unigram is multinomial Naive Bayes")
    collection = "sentence_polarity"
    own_data = "sentence_polarity"  # an NLTK collection, not the cell's dataset


class MovieReviews(Sentiment):
    """movie_reviews document sentiment, one LM per class."""

    name = "movie-reviews"
    description = "positive or negative full movie review (Pang & Lee 2004), one LM per class"
    collection = "movie_reviews"
    own_data = "movie_reviews"  # an NLTK collection, not the cell's dataset


def classify(subject: Subject, data: LabelledData) -> tuple[np.ndarray, int]:
    """Train one fresh model per class on ``data.train`` (validated on ``data.valid`` where it
    has texts) and score ``data.test``: ln p(x | c) + ln p(c), float64 of shape
    ``(test texts, classes)``, and the size of the vocabulary built from the training texts."""
    vocab = build_word_vocab([list(t) for t in data.train.texts], min_count=2)
    models = []
    for label in range(len(data.classes)):
        model = subject.new_model()
        valid = _stream(data.valid, label, vocab) if len(data.valid.texts) else None
        model.fit(_stream(data.train, label, vocab), vocab, budget=subject.budget, valid=valid)
        models.append(model)
    return class_scores(models, class_priors(data), data.test.texts, vocab), len(vocab)


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


def _votes(scores: np.ndarray) -> np.ndarray:
    """(n, classes) fractional votes of argmax predictions, ties split evenly."""
    top = scores == scores.max(axis=1, keepdims=True)
    return top / top.sum(axis=1, keepdims=True)


def text_credit(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each text's credit, float64 ``(n,)``: 1 where its label alone scores highest, 1/e where
    it is tied with e-1 other classes at the top, else 0.  Their mean is the accuracy."""
    return _votes(scores)[np.arange(len(labels)), labels]


def classification_metrics(scores: np.ndarray, labels: np.ndarray, *, seed: int = 0,
                           texts: LabelledSplit | None = None) -> dict[str, Any]:
    """Accuracy (with its 95% Wilson interval) and macro-F1 (with a 95% percentile bootstrap
    interval over the texts, resampled with ``seed``) of argmax predictions, ties split evenly
    between the tied classes.  Given the scored ``texts`` (the same labels, in the same order),
    also the ``paired`` block: each text's credit and the texts' fingerprint."""
    predicted = _votes(scores)  # (n, classes) fractional votes
    truth = np.eye(scores.shape[1])[labels]
    tp = predicted * truth  # (n, classes): each text's share of every class's tp, fp, fn
    fp, fn = predicted - tp, truth - tp
    credit = tp.sum(axis=1)
    hits = float(credit.sum())
    counts = bootstrap_counts(len(labels), seed)
    resampled = macro_f1(counts @ tp, counts @ fp, counts @ fn)  # (resamples,)
    out = {"accuracy": hits / len(labels), "accuracy_ci95": wilson_interval(hits, len(labels)),
           "macro_f1": float(macro_f1(tp.sum(0), fp.sum(0), fn.sum(0))),
           "macro_f1_ci95": percentile_interval(resampled),
           "bootstrap": bootstrap_note(seed, "test texts"), "texts": int(len(labels))}
    if texts is not None:
        if not np.array_equal(texts.labels, labels):
            raise ValueError("classification_metrics: texts' labels differ from labels")
        out["paired"] = paired_block(items_fingerprint(texts.identity()),
                                     accuracy=paired_entry("mean", credit))
    return out


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
