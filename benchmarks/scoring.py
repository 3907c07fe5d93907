"""The only place where per-token log-probabilities become perplexity, bits and accuracy.

Protocol
--------
Every token of a split is scored exactly once, in order, by ``model.token_logprobs``.  The first
token's history is one boundary token (``<eos>`` or ``"\\n"``), so all 82,430 tokens of the PTB
test split -- 78,669 words and 3,761 ``<eos>`` -- are predicted, as in KenLM's and Mikolov's
counts.  How much history the model may use is the :class:`~lmladder.api.ContextPolicy`,
recorded with every result.

Worked example: a split ``the cat <eos>`` (3 tokens, running text ``"the cat\\n"``, 8 characters,
3 word units) and a model returning ln-probabilities ``[-2.0, -3.0, -1.0]``:

* total = 6.0 nats; ``nll`` = 6.0 / 3 = 2.0 nats per token; ``ppl`` = e^2.0 = 7.389;
* ``bits_per_token`` = 2.0 / ln 2 = 2.885;
* ``bpc`` = 6.0 / ln 2 / 8 = 1.082 bits per character of running text;
* ``word_ppl`` = e^(6.0 / 3) = 7.389: total nats over whitespace words plus one per line, the
  unit that makes character- and sub-word models comparable with word models (equal to ``ppl``
  for word-level data).

Accuracy: ``top1``/``top5`` are the expected shares of the first ``accuracy_tokens`` tokens
found among the model's 1 / 5 most likely next tokens, ties broken at random.  For each token
``model.next_token_ranks`` gives ``g`` (entries rated strictly more likely) and ``e`` (entries
exactly as likely, the token included); a random order of the ``e`` tied entries puts the token
in the top ``k`` with probability ``min(1, max(0, (k - g) / e))``, and top-k is the mean of that.

Worked example (k = 5): a token with ``g = 3`` tied with 3 others (``e = 4``) takes one of places
4-7, so it is in the top 5 with probability (5 - 3) / 4 = 0.5 (0.0 for top-1); ``g = 0, e = 1``
counts 1 for both; a uniform model over V tokens gives every token ``g = 0, e = V``, so top-1 =
1 / V and top-5 = 5 / V -- its chance level, not the 100% that counting ties as hits would claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmladder.api import ContextPolicy, LanguageModel, Vocab, supports_pseudo_logprobs
from lmladder.corpus import Dataset, Split

LN2 = math.log(2.0)


class ScoringError(ValueError):
    """A model returned an impossible log-probability (zero probability, NaN, above 1)."""


def check_logprobs(
    logprobs: np.ndarray, tokens: np.ndarray, vocab: Vocab, *, model: str, split: str
) -> np.ndarray:
    """Return ``logprobs`` as float64 if every entry is a finite ln-probability <= 0.

    Otherwise raise :class:`ScoringError` naming the model, split, position and token.
    """
    logprobs = np.asarray(logprobs, dtype=np.float64)
    if logprobs.shape != tokens.shape:
        raise ScoringError(
            f"{model}: token_logprobs returned shape {logprobs.shape} for {tokens.shape} tokens"
        )
    bad = ~np.isfinite(logprobs) | (logprobs > 1e-9)
    if bad.any():
        i = int(np.argmax(bad))
        value = logprobs[i]
        what = "zero probability" if value == -np.inf else f"ln p = {value!r}"
        context = " ".join(vocab.decode(tokens[max(0, i - 4) : i]))
        raise ScoringError(
            f"{model} gave {what} to token {vocab.tokens[int(tokens[i])]!r} "
            f"(id {int(tokens[i])}) at "
            f"position {i} of the {split} split, after '... {context}' "
            f"({int(bad.sum())} such tokens in all)"
        )
    return logprobs


@dataclass(frozen=True)
class Metrics:
    tokens: int
    nats: float
    nll: float
    ppl: float
    bits_per_token: float
    bpc: float
    word_ppl: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def metrics_from_logprobs(logprobs: np.ndarray, split: Split) -> Metrics:
    """Aggregate per-token ln-probabilities of ``split`` (float64 ``(N,)``) into metrics."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    nats = float(-logprobs.sum())
    n = len(logprobs)
    nll = nats / n
    return Metrics(
        tokens=n,
        nats=nats,
        nll=nll,
        ppl=math.exp(nll),
        bits_per_token=nll / LN2,
        bpc=nats / LN2 / split.num_chars,
        word_ppl=math.exp(nats / split.num_words),
    )


def topk_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Expected top-``k`` accuracy under random tie-breaking of ``ranks`` (int ``(N, 2)`` of
    ``(g, e)`` as :meth:`~lmladder.api.LanguageModel.next_token_ranks` returns): the mean of
    ``min(1, max(0, (k - g) / e))``; ``nan`` for no tokens."""
    ranks = _check_ranks(ranks)
    if len(ranks) == 0:
        return math.nan
    g, e = ranks[:, 0].astype(np.float64), ranks[:, 1].astype(np.float64)
    return float(np.mean(np.clip((k - g) / e, 0.0, 1.0)))


def accuracy_from_ranks(ranks: np.ndarray) -> dict:
    """``{"accuracy_tokens", "top1", "top5"}`` from ``(g, e)`` ranks, int ``(N, 2)``: expected
    accuracies under random tie-breaking (see the module docstring's worked example)."""
    ranks = _check_ranks(ranks)
    return {
        "accuracy_tokens": int(len(ranks)),
        "top1": topk_from_ranks(ranks, 1),
        "top5": topk_from_ranks(ranks, 5),
    }


def _check_ranks(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or ranks.shape[1] != 2:
        raise ScoringError(
            f"ranks must have shape (N, 2) -- (strictly better, tied incl. itself) per token -- "
            f"got {ranks.shape}"
        )
    if len(ranks) and ((ranks[:, 0] < 0).any() or (ranks[:, 1] < 1).any()):
        raise ScoringError("ranks need g >= 0 and e >= 1 (a token is tied with itself)")
    return ranks


def check_same_vocabulary(model: LanguageModel, vocab: Vocab, *, name: str) -> None:
    """ScoringError unless ``model`` was fitted (or loaded) on ``vocab``."""
    fitted = getattr(model, "vocab_", None)
    if fitted is not None and fitted != vocab:
        raise ScoringError(
            f"{name} was fitted on another vocabulary ({len(fitted)} tokens, sha256 "
            f"{fitted.sha256[:12]}) than the dataset's ({len(vocab)} tokens, sha256 "
            f"{vocab.sha256[:12]}); its ids would mean other tokens"
        )


def score_split(
    model: LanguageModel,
    split: Split,
    vocab: Vocab,
    *,
    policy: ContextPolicy = ContextPolicy(),
    name: str = "model",
) -> tuple[Metrics, np.ndarray]:
    """Score every token of ``split``; returns the metrics and the checked ln-probabilities.

    A model fitted on another vocabulary than ``vocab`` is refused (:class:`ScoringError`): its
    ids would mean other tokens, or fall outside its vocabulary."""
    check_same_vocabulary(model, vocab, name=name)
    logprobs = model.token_logprobs(split.ids, context=policy)
    logprobs = check_logprobs(logprobs, split.ids, vocab, model=name, split=split.name)
    return metrics_from_logprobs(logprobs, split), logprobs


def score(
    model: LanguageModel,
    data: Dataset,
    split: str = "test",
    *,
    context: ContextPolicy = ContextPolicy(),
) -> Metrics:
    """The metrics of a fitted ``model`` on one split (``"train"``, ``"valid"``, ``"test"``)."""
    if split not in data.splits:
        raise KeyError(f"{data.name} has no split {split!r}; it has {', '.join(data.splits)}")
    metrics, _ = score_split(
        model, data.splits[split], data.vocab, policy=context, name=type(model).__name__
    )
    return metrics


def score_accuracy(
    model: LanguageModel,
    split: Split,
    *,
    policy: ContextPolicy = ContextPolicy(),
    max_tokens: int | None = None,
) -> dict | None:
    """Top-1/top-5 next-token accuracy over the first ``max_tokens`` tokens (``None``: all).

    Returns ``None`` for open-vocabulary models, which cannot rank alternatives.
    """
    if not model.closed_vocabulary:
        return None
    ids = split.ids if max_tokens is None else split.ids[:max_tokens]
    return accuracy_from_ranks(model.next_token_ranks(ids, context=policy))


def pseudo_perplexity(
    model: LanguageModel,
    split: Split,
    vocab: Vocab,
    *,
    max_tokens: int | None = None,
    policy: ContextPolicy = ContextPolicy(),
    name: str = "model",
) -> dict | None:
    """Pseudo-perplexity of a masked LM on the first ``max_tokens`` tokens of ``split``
    (``None``: all), or ``None`` for a model without ``pseudo_logprobs``
    (:class:`~lmladder.api.PseudoScorer`).

    Salazar et al. 2020, "Masked Language Model Scoring": every token is masked in turn and
    scored from all the other tokens of its window, ``PLL = sum_i ln p(w_i | w_-i)``; the
    pseudo-perplexity is ``exp(-PLL / N)``.  The model sees tokens on *both* sides, so this is
    not a likelihood and is never comparable with the causal ``ppl`` of any model, its own
    included: report it separately, labelled as such.  Worked example: ln-probabilities
    ``[-1.0, -2.0, -3.0]`` give ``pseudo_nll`` = 2.0 nats per token and ``pseudo_ppl`` = e^2.0 =
    7.389.  Returns ``{"tokens", "pseudo_nats", "pseudo_nll", "pseudo_ppl", "protocol"}``.
    """
    if not supports_pseudo_logprobs(model):
        return None
    check_same_vocabulary(model, vocab, name=name)
    ids = split.ids if max_tokens is None else split.ids[:max_tokens]
    logprobs = check_logprobs(model.pseudo_logprobs(ids, context=policy), ids, vocab,
                              model=name, split=split.name)
    nats = float(-logprobs.sum())
    nll = nats / len(ids) if len(ids) else math.nan
    return {
        "tokens": int(len(ids)),
        "pseudo_nats": nats,
        "pseudo_nll": nll,
        "pseudo_ppl": math.exp(nll) if len(ids) else math.nan,
        "protocol": ("pseudo-log-likelihood (Salazar et al. 2020): each token masked in turn and "
                     "scored from every other token of its window; not comparable with causal "
                     "perplexity"),
        "context": policy.to_dict(),
    }
