"""What a loaded corpus is: token-id streams per split over one frozen vocabulary.

These types are shared by :mod:`lmladder.data` (corpora from files) and
:mod:`lmladder.synthetic` (text sampled from a known HMM), so neither imports the other's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmladder.api import Vocab

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")


@dataclass
class Split:
    """One split as a token stream.

    ``ids``: int64 ``(num_tokens,)``.  ``oov``: tokens mapped to ``<unk>`` that were something
    else in the file.  ``oracle_logprobs``: for synthetic data, the true source's
    ln p(w_i | w_<i) for every token (float64), else ``None``.
    """

    name: str
    ids: np.ndarray
    num_chars: int
    num_words: int
    num_lines: int
    oov: int = 0
    oracle_logprobs: np.ndarray | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    def head(self, fraction: float, boundary_id: int) -> Split:
        """The first ``fraction`` of this split, cut after the last whole line that fits (at
        least one line).  Characters and words are scaled in proportion to the tokens kept."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if fraction == 1:
            return self
        want = max(1, int(round(fraction * self.num_tokens)))
        ends = np.flatnonzero(self.ids[:want] == boundary_id)
        n = int(ends[-1]) + 1 if len(ends) else want
        share = n / self.num_tokens
        return Split(
            self.name,
            self.ids[:n],
            num_chars=round(self.num_chars * share),
            num_words=round(self.num_words * share),
            num_lines=int(np.count_nonzero(self.ids[:n] == boundary_id)),
            oov=round(self.oov * share),
            oracle_logprobs=None if self.oracle_logprobs is None else self.oracle_logprobs[:n],
        )


@dataclass
class Dataset:
    name: str
    level: str  # "word" or "char"
    vocab: Vocab
    splits: dict[str, Split]
    description: str
    source: dict = field(default_factory=dict)

    def with_train_fraction(self, fraction: float) -> Dataset:
        """This dataset with only the first ``fraction`` of its training split (a learning-curve
        point); the vocabulary, valid and test splits are unchanged, so every point is scored on
        the same tokens."""
        if fraction == 1:
            return self
        head = self.train.head(fraction, self.vocab.boundary_id)
        return Dataset(self.name, self.level, self.vocab, {**self.splits, "train": head},
                       self.description, self.source)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def valid(self) -> Split:
        return self.splits["valid"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    def summary(self) -> dict:
        return {
            "name": self.name,
            "level": self.level,
            "vocab_size": len(self.vocab),
            "vocab_sha256": self.vocab.sha256,
            "boundary": self.vocab.boundary,
            "unk": self.vocab.unk,
            "splits": {
                s.name: {
                    "tokens": s.num_tokens,
                    "chars": s.num_chars,
                    "words": s.num_words,
                    "lines": s.num_lines,
                    "oov": s.oov,
                }
                for s in self.splits.values()
            },
            "source": self.source,
        }
