"""Sentiment classification by fine-tuning: pre-train as a language model, then add a head.

The recipe of ULMFiT (Howard & Ruder 2018) and BERT (Devlin et al. 2019), on the ladder's terms:
the cell's model, already fitted as a language model on the cell's corpus (WikiText-2, PTB, ...),
is fine-tuned with a classification head on the labelled split of :mod:`lmladder.tasks.labelled`
(the same fixed, stratified split the generative :mod:`lmladder.tasks.sentiment` tasks use), under
the cell's budget.  The same entry and config, *not* pre-trained (a fresh model given only the
vocabulary), is fine-tuned under the same budget and seed: ``gain_from_pretraining`` is the
difference of their test accuracies.

Tokens: the labelled texts are encoded with the *model's* vocabulary -- the corpus it was
pre-trained on -- not one built from the labelled texts, since the pre-trained embeddings exist
only for those ids.  A word the corpus vocabulary lacks becomes its ``<unk>`` (``oov_rate`` in
the result says how often; a vocabulary without ``<unk>`` drops such tokens).  On a
character-level corpus a text is its words joined by spaces, read character by character.

Only models that offer the :class:`~lmladder.api.FineTunable` capability (the torch families and
``hf-bert``) run this task; for the others (n-grams, HMMs: no network to fine-tune) it is "not
applicable".  Accuracy is reported with its 95% Wilson interval, macro-F1 beside it; chance is 50%
(both collections are balanced).  The ``paired`` block keeps each test text's credit for
``accuracy`` and ``scratch_accuracy`` with the fingerprint of the test texts -- the fixed split's,
the same as the generative tasks' fixed-split results, so a fine-tuned row and a generative row
can be tested against each other (:mod:`lmladder.significance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmladder.api import Classifier, Vocab, supports_fine_tuning
from lmladder.tasks import MetricSpec, NotApplicable, Subject, Task
from lmladder.tasks.labelled import LabelledSplit, load_labelled
from lmladder.tasks.sentiment import classification_metrics


class FineTune(Task):
    """Fine-tuned classification of a labelled NLTK collection (set by subclasses)."""

    collection: str
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.5),
               MetricSpec("macro_f1", higher_is_better=True, chance=0.5),
               MetricSpec("scratch_accuracy", higher_is_better=True, chance=0.5),
               MetricSpec("gain_from_pretraining", higher_is_better=True, chance=0.0))

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        model = subject.model
        if not supports_fine_tuning(model):
            raise NotApplicable(f"{type(model).__name__} has no fine_tune_classifier "
                                "capability (no network to fine-tune)")
        vocab = model._require_fitted()
        data = load_labelled(self.collection, subject.data_dir)
        train, oov, total = encode_split(data.train, vocab)
        valid, _, _ = encode_split(data.valid, vocab)
        test, _, _ = encode_split(data.test, vocab)
        k = len(data.classes)
        common = dict(budget=subject.budget, valid=(valid, data.valid.labels), seed=seed)
        tuned = model.fine_tune_classifier(train, data.train.labels, k, **common)
        scratch = subject.new_model().fine_tune_classifier(train, data.train.labels, k,
                                                           vocab=vocab, **common)
        ours = classification_metrics(tuned.predict_logits(test), data.test.labels, seed=seed,
                                      texts=data.test)
        base = classification_metrics(scratch.predict_logits(test), data.test.labels, seed=seed,
                                      texts=data.test)
        # the from-scratch twin's per-text credit too, so its gap can be tested text by text
        ours["paired"]["metrics"]["scratch_accuracy"] = base["paired"]["metrics"]["accuracy"]
        return {
            **ours,
            "scratch_accuracy": base["accuracy"],
            "scratch_accuracy_ci95": base["accuracy_ci95"],
            "scratch_macro_f1": base["macro_f1"],
            "scratch_macro_f1_ci95": base["macro_f1_ci95"],
            "gain_from_pretraining": ours["accuracy"] - base["accuracy"],
            "fine_tuning": _summary(tuned),
            "scratch_fine_tuning": _summary(scratch),
            "collection": data.summary(),
            "vocab_size": len(vocab),
            "oov_rate": oov / max(1, total),
            "seed": seed,
        }


class RtPolarityFineTune(FineTune):
    """rt-polarity sentence sentiment, the cell's LM fine-tuned with a classification head."""

    name = "rt-polarity-finetune"
    description = ("positive or negative movie snippet (rt-polarity): the cell's pre-trained LM "
                   "fine-tuned with a classification head, vs. the same model from scratch")
    collection = "sentence_polarity"


class MovieReviewsFineTune(FineTune):
    """movie_reviews document sentiment, the cell's LM fine-tuned with a classification head."""

    name = "movie-reviews-finetune"
    description = ("positive or negative full movie review: the cell's pre-trained LM "
                   "fine-tuned with a classification head, vs. the same model from scratch")
    collection = "movie_reviews"


def encode_texts(texts: Sequence[Sequence[str]], vocab: Vocab
                 ) -> tuple[list[np.ndarray], int, int]:
    """Texts (lists of words) as int64 id arrays of ``vocab``: unknown tokens become ``<unk>``
    (dropped if the vocabulary has none); a character vocabulary (separator ``""``) reads the
    words joined by spaces.  Returns ``(ids per text, unknown tokens, all tokens)``."""
    out, unknown, total = [], 0, 0
    index, unk = vocab.index, vocab.unk_id
    for text in texts:
        units = list(" ".join(text)) if vocab.separator == "" else list(text)
        ids = [index.get(u, -1) for u in units]
        missing = sum(i < 0 for i in ids)
        ids = [i if i >= 0 else unk for i in ids if i >= 0 or unk is not None]
        out.append(np.asarray(ids, dtype=np.int64))
        unknown += missing
        total += len(units)
    return out, unknown, total


def encode_split(split: LabelledSplit, vocab: Vocab) -> tuple[list[np.ndarray], int, int]:
    return encode_texts(split.texts, vocab)


def _summary(classifier: Classifier) -> dict[str, Any]:
    report = getattr(classifier, "report", None)
    if report is None:
        return {}
    return {"steps": report.steps, "tokens": report.train_tokens, "seconds": report.seconds,
            "valid_seconds": report.valid_seconds, **report.notes}
