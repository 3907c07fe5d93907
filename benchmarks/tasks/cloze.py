"""Cloze: pick the blanked word of a sentence among frequency-matched distractors.

In the style of the MSR Sentence Completion Challenge (Zweig & Burges 2011: one word of each
sentence blanked, four impostors of similar frequency, chance 20%; a KN5 scored about 40% on
their set, Mikolov's RNNs about 50%), built from a word-level dataset's test split:

* An item is a test line of 6 to 40 words with one **content word** blanked: a word seen at
  least ``min_count`` times in training that is not ``<unk>`` and not among the
  ``common_words`` most frequent training words (function words, which the MSR set never blanks).
* Its four distractors are drawn from a window of ``2 * window + 1`` neighbouring training
  frequency ranks that holds the answer at a random place (not at its centre, where the answer
  would be the most frequent candidate only when all four distractors are rarer, 1 time in 16),
  so frequency alone gives nothing away: a unigram model scores chance.
* The model picks the candidate that gives the whole sentence (scored on its own, after one
  boundary token, up to and including its ``<eos>``) the highest log-probability.  Ties are
  scored fairly: an answer tied with e-1 others at the top counts 1/e.

The MSR impostors were chosen by a generator and then filtered by hand to fit the sentence
grammatically; ours are drawn at random among frequency-matched words, which is easier (PTB, 1,000
items, seed 0: KN5 72.4%, add-one bigram 67.3%, add-one unigram 21.2%), so scores are comparable
between lmladder's models, not with the MSR figures.

Items, candidate order and the answer's place come from ``numpy.random.default_rng(seed)``, so
a dataset and a seed give the same items everywhere.  Accuracy is reported with its 95% Wilson
interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmladder.api import ContextPolicy, LanguageModel
from lmladder.corpus import Dataset
from lmladder.scoring import check_logprobs
from lmladder.tasks import MetricSpec, Subject, Task, wilson_interval


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


class Cloze(Task):
    """Sentence completion, MSR style: 1 blank, 4 frequency-matched distractors; chance 20%."""

    name = "cloze"
    description = "pick the blanked word of a test sentence among 5 frequency-matched candidates"
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.2),)

    def __init__(self, *, items: int = 1000, choices: int = 5, common_words: int = 100,
                 min_count: int = 5, window: int = 25, min_words: int = 6, max_words: int = 40):
        if items < 1 or choices < 2 or window < choices:
            raise ValueError("cloze needs items >= 1, choices >= 2 and window >= choices")
        self.n_items, self.choices, self.common_words = items, choices, common_words
        self.min_count, self.window = min_count, window
        self.min_words, self.max_words = min_words, max_words

    def build_items(self, data: Dataset, seed: int = 0) -> list[ClozeItem]:
        """The questions for ``data`` and ``seed`` (deterministic)."""
        if data.level != "word":
            raise ValueError(f"cloze needs a word-level dataset; {data.name} is {data.level}-level")
        vocab = data.vocab
        counts = np.bincount(data.train.ids, minlength=len(vocab))
        by_frequency = np.argsort(-counts, kind="stable")
        common = set(by_frequency[: self.common_words].tolist())
        excluded = {vocab.boundary_id, vocab.unk_id}
        pool = np.array([w for w in by_frequency if counts[w] >= self.min_count
                         and w not in common and w not in excluded], dtype=np.int64)
        rank = {int(w): i for i, w in enumerate(pool)}
        if len(pool) <= self.window:
            raise ValueError(f"cloze: {data.name} has only {len(pool)} content words; "
                             f"it needs more than {self.window}")
        rng = np.random.default_rng(seed)
        lines = np.split(data.test.ids, np.flatnonzero(data.test.ids == vocab.boundary_id) + 1)
        items = []
        for i in rng.permutation(len(lines)):
            words = lines[i][lines[i] != vocab.boundary_id]
            if not self.min_words <= len(words) <= self.max_words:
                continue
            slots = [p for p, w in enumerate(words.tolist()) if w in rank]
            if not slots:
                continue
            position = int(rng.choice(slots))
            answer_word = int(words[position])
            r = rank[answer_word]  # a window of 2 * window + 1 ranks holding the answer at a
            # random place, so the answer is as often the most frequent candidate as any other
            lo = min(max(0, r - int(rng.integers(0, 2 * self.window + 1))),
                     len(pool) - 2 * self.window - 1)
            near = [int(w) for w in pool[max(0, lo): lo + 2 * self.window + 1] if w != answer_word]
            distractors = rng.choice(near, size=self.choices - 1, replace=False).tolist()
            candidates = [answer_word, *distractors]
            order = rng.permutation(self.choices)
            items.append(ClozeItem(words, position, tuple(candidates[j] for j in order),
                                   int(np.flatnonzero(order == 0)[0])))
            if len(items) == self.n_items:
                break
        return items

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        model, data = subject.model, subject.data
        items = self.build_items(data, seed)
        scores = sentence_logprobs(model, [s for it in items for s in it.sentences()],
                                   data.vocab.boundary_id).reshape(len(items), self.choices)
        hits = 0.0
        for item, row in zip(items, scores, strict=True):
            top = np.flatnonzero(row == row.max())
            hits += (item.answer in top) / len(top)
        return {"accuracy": hits / len(items), "accuracy_ci95": wilson_interval(hits, len(items)),
                "items": len(items), "choices": self.choices, "seed": seed}


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
