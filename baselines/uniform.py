"""The floor of the ladder: every token of the vocabulary equally likely, whatever came before.

Its perplexity is the vocabulary size (PTB: 10,000), its top-k accuracy is k / V, and it learns
nothing but the vocabulary -- the zeroth-order model that interpolated n-gram smoothing falls back
to (Chen & Goodman 1998, section 2.4).  A row that scores worse than this one (or than the unigram
row just above it) learned less than counting would have: the report greys such rows out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    ProgressCallback,
    Vocab,
)


@dataclass(frozen=True)
class UniformConfig:
    """No hyperparameters: the distribution is fixed by the vocabulary."""


class UniformLM(LanguageModel):
    """ln p(w | anything) = -ln V for every token ``w`` of a V-word vocabulary."""

    Config = UniformConfig
    devices = ("cpu",)
    revision = 1
    family = "n-gram"  # the order-0 n-gram model

    def fit(self, train: np.ndarray, vocab: Vocab, *, budget: Budget = Budget(),
            valid: np.ndarray | None = None,
            callback: ProgressCallback | None = None) -> FitReport:
        """Remember the vocabulary; the training tokens are not read (one pass, zero steps)."""
        self.vocab_ = vocab
        return FitReport(train_tokens=0, steps=0, seconds=0.0)

    def _logp(self) -> float:
        return -float(np.log(len(self._require_fitted())))

    def init_state(self, batch: int) -> np.ndarray:
        return np.zeros((batch, 0), dtype=np.int64)

    def step(self, state: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = len(self._require_fitted())
        return np.full((len(tokens), size), self._logp()), state

    def token_logprobs(self, tokens: np.ndarray, *,
                       context: ContextPolicy = ContextPolicy()) -> np.ndarray:
        return np.full(len(self._checked_ids(tokens)), self._logp())

    def next_token_ranks(self, tokens: np.ndarray, *,
                         context: ContextPolicy = ContextPolicy()) -> np.ndarray:
        n, size = len(self._checked_ids(tokens)), len(self.vocab_)
        return np.column_stack([np.zeros(n, dtype=np.int64), np.full(n, size, dtype=np.int64)])

    def num_parameters(self) -> int:
        return 0

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        pass
