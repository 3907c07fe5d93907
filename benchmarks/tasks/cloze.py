"""Cloze: pick the blanked word of a sentence among frequency-matched distractors.

In the style of the MSR Sentence Completion Challenge (Zweig & Burges 2011: one word of each
sentence blanked, four impostors of similar frequency, chance 20%; a KN5 scored about 40% on
their set, Mikolov's RNNs about 50%), built from a word-level dataset's test split:

* The **pool** is the content words ranked by training count, most frequent first (equal counts
  in id order): words seen at least ``min_count`` times in training that are not ``<unk>`` and
  not among the ``common_words`` most frequent training words (function words, which the MSR set
  never blanks).
* An item is a test line of ``min_words`` to ``max_words`` words with one pool word blanked.
  A word can be the answer only if at least ``window`` pool words are strictly more frequent and
  at least ``window`` strictly less frequent (so the most frequent ``window`` pool words and the
  least frequent ones, e.g. every word seen exactly ``min_count`` times, are never answers; they
  remain distractors).
* Its ``choices - 1`` distractors: ``j`` of them drawn from the **nearest higher counts** (the
  fewest whole count levels above the answer's training count that hold at least ``window``
  words), the other ``choices - 1 - j`` from the nearest lower counts, likewise.  No distractor
  has the answer's count, so exactly ``j`` candidates are more frequent than the answer.
  ``j`` takes each value 0..choices-1 once in every ``choices`` items taken in order of the
  answer's rank: uniform at every frequency, so a model that knows only training frequencies
  (any score increasing with the count, such as an add-one unigram) ranks the answer first in
  exactly 1 item of ``choices`` in every frequency band.  (The window this replaces, 2 x 25
  ranks around the answer clamped at the top of the pool, made the answer the most frequent
  candidate in 38-41% of PTB items whose answer was among the 50 most frequent pool words.)
* The model picks the candidate that gives the whole sentence (scored on its own, after one
  boundary token, up to and including its ``<eos>``) the highest log-probability.  Ties are
  scored fairly: an answer tied with e-1 others at the top counts 1/e.

Items, ``j``, distractors, candidate order and the answer's place all come from
``numpy.random.default_rng(seed)``, so a dataset and a seed give the same items everywhere.
Accuracy is reported with its 95% Wilson interval, overall and in ``bands`` frequency bands
(``accuracy_by_band``: equal numbers of items, cut in order of the answer's pool rank, band 0 the
most frequent answers; each with its pool ``ranks`` [lo, hi]); ``paired`` keeps each item's
credit (1, 0 or 1/e) and the items' fingerprint for paired tests between rows
(:mod:`lmladder.significance`).

The MSR impostors were chosen by a generator and then filtered by hand to fit the sentence
grammatically; ours are drawn at random among frequency-matched words, which is easier.  PTB,
1,000 items, seed 0, models fitted on PTB train (accuracy, 95% Wilson interval; bands of 200
items, pool ranks 26-182, 182-462, 464-1154, 1154-2813, 2833-9378):

========================  ====================  ===================================
model                     accuracy              by band, most frequent answers first
========================  ====================  ===================================
add-one unigram           20.0% [17.6, 22.6]    20.0% in every band
add-one bigram            72.7% [69.9, 75.4]    82.5, 76.5, 74.0, 66.0, 64.5
KN5 (modified KN)         77.0% [74.3, 79.5]    88.0, 79.5, 78.0, 72.0, 67.5
========================  ====================  ===================================

so scores are comparable between lmladder's models, not with the MSR figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmladder.api import ContextPolicy, LanguageModel
from lmladder.corpus import Dataset
from lmladder.scoring import check_logprobs
from lmladder.tasks import (
    MetricSpec,
    Subject,
    Task,
    items_fingerprint,
    paired_block,
    paired_entry,
    wilson_interval,
)


@dataclass(frozen=True)
class ClozeItem:
    """One question: ``words`` (int64 ids, no boundary), the blank's ``position``, the
    ``candidates`` in presentation order and the index of the right one."""

    words: np.ndarray
    position: int
    candidates: tuple[int, ...]
    answer: int

    def sentences(self) -> list[np.ndarray]:
        out = []
        for c in self.candidates:
            s = self.words.copy()
            s[self.position] = c
            out.append(s)
        return out

    def identity(self) -> dict[str, Any]:
        """What identifies the item, for :func:`~lmladder.tasks.items_fingerprint`."""
        return {"words": self.words.tolist(), "position": self.position,
                "candidates": list(self.candidates), "answer": self.answer}


def _whole(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"cloze: {name} must be an integer >= {least}, got {value!r}")
    return int(value)


class Cloze(Task):
    """Sentence completion, MSR style: 1 blank, 4 frequency-matched distractors; chance 20%."""

    name = "cloze"
    description = "pick the blanked word of a test sentence among 5 frequency-matched candidates"
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.2),)

    def __init__(self, *, items: int = 1000, choices: int = 5, common_words: int = 100,
                 min_count: int = 5, window: int = 25, min_words: int = 6, max_words: int = 40,
                 bands: int = 5):
        self.n_items = _whole("items", items, 1)
        self.choices = _whole("choices", choices, 2)
        self.common_words = _whole("common_words", common_words, 0)
        self.min_count = _whole("min_count", min_count, 1)
        self.window = _whole("window", window, 1)
        self.min_words = _whole("min_words", min_words, 1)
        self.max_words = _whole("max_words", max_words, 1)
        self.bands = _whole("bands", bands, 1)
        if self.window < self.choices - 1:
            raise ValueError(f"cloze: window ({window}) must be at least choices - 1 "
                             f"({self.choices - 1}): all distractors may come from one side")
        if self.max_words < self.min_words:
            raise ValueError(f"cloze: max_words ({max_words}) is below min_words ({min_words})")
        if self.bands > self.n_items:
            raise ValueError(f"cloze: {bands} bands need at least as many items, got {items}")

    def content_words(self, data: Dataset) -> np.ndarray:
        """The pool of candidate words, most frequent in training first (int64 ids): words seen
        at least ``min_count`` times, not ``<unk>``, the boundary or among the ``common_words``
        most frequent; equal counts in id order.  A word's index here is its pool rank."""
        if data.level != "word":
            raise ValueError(f"cloze needs a word-level dataset; {data.name} is {data.level}-level")
        vocab = data.vocab
        counts = np.bincount(data.train.ids, minlength=len(vocab))
        by_frequency = np.argsort(-counts, kind="stable")
        excluded = {vocab.boundary_id, vocab.unk_id, *by_frequency[: self.common_words].tolist()}
        return np.array([w for w in by_frequency.tolist()
                         if counts[w] >= self.min_count and w not in excluded], dtype=np.int64)

    def build_items(self, data: Dataset, seed: int = 0) -> list[ClozeItem]:
        """The questions for ``data`` and ``seed`` (deterministic)."""
        pool = self.content_words(data)
        w, k = self.window, self.choices
        negative = -np.bincount(data.train.ids, minlength=len(data.vocab))[pool]  # ascending
        # first and one-past-last pool rank of each rank's count level
        first = np.searchsorted(negative, negative, side="left")
        last = np.searchsorted(negative, negative, side="right")
        answerable = (first >= w) & (last + w <= len(pool))
        if not answerable.any():
            raise ValueError(f"cloze: {data.name} has too few content words (seen at least "
                             f"{self.min_count} times, beyond the {self.common_words} most "
                             f"frequent): no count has {w} (window) of the {len(pool)} both "
                             f"more and less frequent")
        rank = {int(word): r for r, word in enumerate(pool.tolist()) if answerable[r]}
        rng = np.random.default_rng(seed)
        vocab = data.vocab
        lines = np.split(data.test.ids, np.flatnonzero(data.test.ids == vocab.boundary_id) + 1)
        chosen: list[tuple[np.ndarray, int, int]] = []  # words, blank position, answer rank
        for i in rng.permutation(len(lines)):
            words = lines[i][lines[i] != vocab.boundary_id]
            if not self.min_words <= len(words) <= self.max_words:
                continue
            slots = [p for p, word in enumerate(words.tolist()) if word in rank]
            if not slots:
                continue
            position = int(rng.choice(slots))
            chosen.append((words, position, rank[int(words[position])]))
            if len(chosen) == self.n_items:
                break
        if len(chosen) < self.bands:
            raise ValueError(f"cloze: {data.name}'s test split gives only {len(chosen)} items "
                             f"(lines of {self.min_words} to {self.max_words} words holding a "
                             f"content word that can be an answer); {self.bands} bands need at "
                             f"least {self.bands}")
        # How many distractors are more frequent than the answer: each of 0..k-1 once in every
        # k items taken in order of the answer's rank, so it is uniform at every frequency.
        above = np.empty(len(chosen), dtype=np.int64)
        by_rank = sorted(range(len(chosen)), key=lambda j: (chosen[j][2], j))
        for start in range(0, len(by_rank), k):
            block = by_rank[start:start + k]
            above[block] = rng.permutation(k)[: len(block)]
        items = []
        for (words, position, r), up in zip(chosen, above.tolist(), strict=True):
            more = pool[first[first[r] - w]:first[r]]  # the nearest higher counts, whole
            less = pool[last[r]:last[last[r] + w - 1]]  # the nearest lower counts, whole
            candidates = [int(pool[r]), *rng.choice(more, size=up, replace=False).tolist(),
                          *rng.choice(less, size=k - 1 - up, replace=False).tolist()]
            order = rng.permutation(k)
            items.append(ClozeItem(words, position, tuple(candidates[j] for j in order),
                                   int(np.flatnonzero(order == 0)[0])))
        return items

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        model, data = subject.model, subject.data
        items = self.build_items(data, seed)
        scores = sentence_logprobs(model, [s for it in items for s in it.sentences()],
                                   data.vocab.boundary_id).reshape(len(items), self.choices)
        credit = np.empty(len(items))
        for i, (item, row) in enumerate(zip(items, scores, strict=True)):
            top = np.flatnonzero(row == row.max())
            credit[i] = (item.answer in top) / len(top)
        rank = {int(word): r for r, word in enumerate(self.content_words(data).tolist())}
        ranks = np.array([rank[it.candidates[it.answer]] for it in items])
        hits = float(credit.sum())
        return {"accuracy": hits / len(items), "accuracy_ci95": wilson_interval(hits, len(items)),
                "accuracy_by_band": band_accuracies(ranks, credit, self.bands),
                "items": len(items), "choices": self.choices, "seed": seed,
                "paired": paired_block(items_fingerprint([it.identity() for it in items]),
                                       accuracy=paired_entry("mean", credit))}


def band_accuracies(ranks: np.ndarray, credit: np.ndarray, bands: int) -> list[dict[str, Any]]:
    """Accuracy in ``bands`` frequency bands of equal numbers of items (sizes differ by at most
    one), cut in order of the answer's pool rank (most frequent first; equal ranks in item
    order, so one answer word may end a band and start the next).  Each band: its number
    ``band`` (0 = most frequent answers), the pool ``ranks`` [lo, hi] of its answers, its
    ``items``, ``accuracy`` and its 95% Wilson interval ``accuracy_ci95``."""
    out = []
    for k, band in enumerate(np.array_split(np.argsort(ranks, kind="stable"), bands)):
        hits = float(credit[band].sum())
        out.append({"band": k, "ranks": [int(ranks[band].min()), int(ranks[band].max())],
                    "items": len(band), "accuracy": hits / len(band),
                    "accuracy_ci95": wilson_interval(hits, len(band))})
    return out


def sentence_logprobs(model: LanguageModel, sentences: list[np.ndarray],
                      boundary_id: int) -> np.ndarray:
    """ln p of each sentence scored on its own (after one boundary token, its own boundary
    included): one ``token_logprobs`` call over all of them, resetting at every boundary.  A zero
    or NaN probability is an error naming the model and token, as in perplexity scoring."""
    stream = np.concatenate([np.append(s, boundary_id) for s in sentences]).astype(np.int64)
    logp = check_logprobs(
        model.token_logprobs(stream, context=ContextPolicy(reset_at_boundary=True)),
        stream, model.vocab_, model=type(model).__name__, split="task sentences")
    starts = np.cumsum([0] + [len(s) + 1 for s in sentences[:-1]])
    return np.add.reduceat(logp, starts)
